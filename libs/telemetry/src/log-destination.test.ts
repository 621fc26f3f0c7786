import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startProcess, waitFor } from "@meshwork/testing";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createLogDestination, createLogger, isoTime, LOG_BATCH_BYTES } from "./logger.js";

const child = fileURLToPath(new URL("../test/batched-exit-child.ts", import.meta.url));
const dirs: string[] = [];

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "log-destination-"));
  dirs.push(dir);
  return join(dir, "out.log");
}

async function linesOf(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").filter(Boolean);
}

/** Logs `count` lines of ~130 bytes, one per timer turn; resolves with the destination's writes once all are in `file`. */
async function writesFor(file: string, batch: boolean, count: number): Promise<number> {
  const destination = createLogDestination({ dest: file, batch, flushMs: 1_000 });
  let writes = 0;
  destination.on("write", () => writes++);
  const logger = createLogger({ service: "t", destination });
  for (let i = 0; i < count; i++) {
    logger.info({ i, path: "/meshwork.users.v1.UserService/GetUser" }, "access");
    await new Promise((r) => setTimeout(r, 1));
  }
  await waitFor(async () => (await linesOf(file)).length === count, { timeoutMs: 5_000, what: "every line" });
  return writes;
}

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("createLogDestination", () => {
  it("batched, writes a few KiB at a time where lines one by one are written one by one", async () => {
    const count = 40; // ~5 KiB: one write at LOG_BATCH_BYTES, the rest at the flush
    expect(count * 130).toBeGreaterThan(LOG_BATCH_BYTES);
    const batched = await writesFor(await tempFile(), true, count);
    const unbatched = await writesFor(await tempFile(), false, count);
    expect(batched).toBeLessThanOrEqual(4);
    expect(unbatched).toBeGreaterThan(10);
  });

  it("batched with batchBytes, gathers that many bytes per write; refuses a size that is not one", async () => {
    const file = await tempFile();
    const destination = createLogDestination({
      dest: file,
      batch: true,
      batchBytes: 16 * 1024,
      flushMs: 60_000,
    });
    await new Promise((r) => destination.once("ready", r));
    let writes = 0;
    destination.on("write", () => writes++);
    const logger = createLogger({ service: "t", destination });
    // ~15 KiB: three writes at the default LOG_BATCH_BYTES, none yet at 16 KiB.
    const count = 100;
    for (let i = 0; i < count; i++) logger.info({ i, pad: "x".repeat(60) }, "line");
    // No fixed wait for writes that must not come: the one write counted below is the proof (at
    // 4 KiB the first batch is written at once and the rest after it: two writes or more).
    destination.flush();
    await waitFor(async () => (await linesOf(file)).length === count, {
      timeoutMs: 5_000,
      what: "every line",
    });
    expect(writes).toBe(1);
    // What they came to: more than three batches of the default size, less than one of 16 KiB.
    const bytes = (await readFile(file)).length;
    expect(bytes).toBeGreaterThan(3 * LOG_BATCH_BYTES);
    expect(bytes).toBeLessThan(16 * 1024);
    destination.end();
    for (const bad of [0, -1, 1.5, Number.NaN, 1024 * 1024 + 1, 2 ** 31]) {
      expect(() => createLogDestination({ dest: file, batch: true, batchBytes: bad })).toThrow(
        /batchBytes must be a positive integer up to 1048576, got/,
      );
    }
    // The largest is taken (sonic-boom takes its minLength below the maxWrite given with it).
    const largest = createLogDestination({ dest: file, batch: true, batchBytes: 1024 * 1024 });
    largest.end();
    await new Promise((r) => largest.once("close", r));
  });

  it("batched, hands sonic-boom whole batches (not line by line), in the order written", async () => {
    const file = await tempFile();
    const destination = createLogDestination({ dest: file, batch: true, flushMs: 60_000 });
    await new Promise((r) => destination.once("ready", r));
    const logger = createLogger({ service: "t", destination });
    // sonic-boom's own pending bytes: each line it took was appended and measured there.
    const pending = () => (destination as unknown as { _len: number })._len;
    logger.info({ i: 0 }, "line");
    logger.info({ i: 1 }, "line");
    expect(pending()).toBe(0);
    let i = 2;
    for (; i * 60 < 3 * LOG_BATCH_BYTES; i++) logger.info({ i, pad: "x".repeat(20) }, "line");
    destination.flush();
    logger.info({ i }, "line");
    destination.end();
    await waitFor(async () => (await linesOf(file)).length === i + 1, {
      timeoutMs: 5_000,
      what: "every line",
    });
    const order = (await linesOf(file)).map((l) => (JSON.parse(l) as { i: number }).i);
    expect(order).toEqual(Array.from({ length: i + 1 }, (_, k) => k));
  });

  it("batched, writes the lines logged after end() while its last write runs, as sonic-boom does", async () => {
    const file = await tempFile();
    const destination = createLogDestination({ dest: file, batch: true, flushMs: 60_000 });
    await new Promise((r) => destination.once("ready", r));
    const logger = createLogger({ service: "t", destination });
    for (let i = 0; i < 200; i++) logger.info({ i, pad: "x".repeat(40) }, "line");
    destination.end();
    for (let i = 200; i < 205; i++) logger.info({ i }, "line");
    await new Promise((r) => destination.once("close", r));
    const order = (await linesOf(file)).map((l) => (JSON.parse(l) as { i: number }).i);
    expect(order).toEqual(Array.from({ length: 205 }, (_, k) => k));
  });

  it("batched, a flush on a destroyed destination reports the error to its callback", async () => {
    const destination = createLogDestination({ dest: await tempFile(), batch: true, flushMs: 60_000 });
    await new Promise((r) => destination.once("ready", r));
    createLogger({ service: "t", destination }).info("held");
    (destination as unknown as { destroy(): void }).destroy();
    const err = await new Promise<Error | undefined>((resolve) =>
      (destination as unknown as { flush(cb: (e?: Error) => void): void }).flush(resolve),
    );
    expect(err?.message).toMatch(/destroyed/i);
  });

  it("batched, writes a lone line within its flush interval", async () => {
    const file = await tempFile();
    const destination = createLogDestination({ dest: file, batch: true, flushMs: 100 });
    createLogger({ service: "t", destination }).info("alone");
    const started = performance.now();
    await waitFor(async () => (await linesOf(file)).length === 1, { timeoutMs: 2_000, what: "the line" });
    // 100 ms, plus what a loaded machine adds to a timer and a write.
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("batched, writes what it holds when the process exits (process.exit after SIGTERM)", async () => {
    const exiting = startProcess(process.execPath, ["--import", "tsx", child, "exit"]);
    expect(await exiting.exited).toBe(0);
    await waitFor(() => exiting.logs().filter((l) => l.msg === "before exit").length === 3, {
      timeoutMs: 2_000,
      what: "the three lines logged before exit",
    });

    const waiting = startProcess(process.execPath, ["--import", "tsx", child, "wait"]);
    // The line logged at start comes out by the timer while the process idles.
    await waiting.waitForLog((l) => l.msg === "alone", 10_000);
    expect(await waiting.stop("SIGTERM")).toBe(0);
    await waitFor(() => waiting.logs().some((l) => l.msg === "stopping"), {
      timeoutMs: 2_000,
      what: "the line logged on SIGTERM",
    });
  }, 30_000);
});

/** The time in an `isoTime` fragment (`,"time":"..."`), in ms. */
const timeOf = (fragment: string) =>
  Date.parse((JSON.parse(`{${fragment.slice(1)}}`) as { time: string }).time);

describe("isoTime", () => {
  it("is pino's isoTime, made once per millisecond", () => {
    const deadline = Date.now() + 50;
    while (Date.now() < deadline) {
      const ours = isoTime();
      const theirs = pino.stdTimeFunctions.isoTime();
      // The same, unless the millisecond turned between the two calls.
      if (ours !== theirs) expect(timeOf(theirs)).toBeGreaterThan(timeOf(ours));
      expect(Math.abs(timeOf(ours) - Date.now())).toBeLessThan(1_000);
    }
  });
});
