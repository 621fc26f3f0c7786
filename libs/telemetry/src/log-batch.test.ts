import { execFileSync } from "node:child_process";
import fs, { closeSync, constants, openSync, readFileSync, readSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { waitFor } from "@meshwork/testing";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { createLineWriter } from "./log-line.js";
import { createLogDestination, createLogger } from "./logger.js";

const dirs: string[] = [];

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "log-batch-"));
  dirs.push(dir);
  return join(dir, "out.log");
}

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

const BATCH = 1024;

async function batched(file: string) {
  const destination = createLogDestination({ dest: file, batch: true, batchBytes: BATCH, flushMs: 60_000 });
  await new Promise((r) => destination.once("ready", r));
  const logger = createLogger({ service: "t", destination });
  return { destination, logger };
}

async function linesOf(file: string, count: number): Promise<string[]> {
  let lines: string[] = [];
  await waitFor(
    async () => {
      lines = (await readFile(file, "utf8").catch(() => "")).split("\n").filter(Boolean);
      return lines.length === count;
    },
    { timeoutMs: 5_000, what: `${count} lines` },
  );
  return lines;
}

describe("a batched destination's bytes", () => {
  it("converts each line to bytes once: sonic-boom neither measures nor re-encodes a batch", async () => {
    const file = await tempFile();
    const { destination, logger } = await batched(file);
    const writer = createLineWriter(logger, "info", "access");
    // Before: sonic-boom measured every line (Buffer.byteLength) and converted each written
    // batch back to bytes (Buffer.from) to cut off what was written.
    const byteLength = vi.spyOn(Buffer, "byteLength");
    const from = vi.spyOn(Buffer, "from");
    const count = 40; // ~4 KiB of ASCII lines: several batches of 1 KiB
    for (let i = 0; i < count; i++) writer.write(`,"i":${i},"pad":"${"x".repeat(40)}"`);
    destination.flush();
    const lines = await linesOf(file, count);
    expect(byteLength).not.toHaveBeenCalled();
    // No string converted (sonic-boom itself copies a batch's bytes on Node 22.7 and later).
    expect(from.mock.calls.filter(([value]) => typeof value === "string")).toEqual([]);
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(
      Array.from({ length: count }, (_, k) => k),
    );
    destination.end();
  });

  it("cuts batches from one slab while its writes keep up (a new slab per ~1,300 calls was promoted, then garbage)", async () => {
    const file = await tempFile();
    const { destination, logger } = await batched(file);
    const writer = createLineWriter(logger, "info", "access");
    const slabs = vi.spyOn(Buffer, "allocUnsafeSlow");
    // ~110 bytes a line, 9,000 lines: ~1 MB, two 512 KiB slabs' worth were none reused. Every
    // 30 lines (three batches) wait until sonic-boom has written what it was given.
    const count = 9_000;
    for (let i = 0; i < count; i++) {
      writer.write(`,"i":${i},"pad":"${"y".repeat(80)}"`);
      if (i % 30 === 29)
        await new Promise<void>((resolve, reject) => destination.flush((e) => (e ? reject(e) : resolve())));
    }
    destination.flush();
    // Counted before the file is read (readFile reads in 512 KiB buffers of its own).
    expect(slabs.mock.calls.filter(([size]) => size === 512 * 1024)).toHaveLength(1);
    slabs.mockRestore();
    const lines = await linesOf(file, count);
    // Reused bytes never overwrote a batch before it was written.
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(
      Array.from({ length: count }, (_, k) => k),
    );
    destination.end();
  });

  it("reuses a slab's bytes only once written, when writes lag behind (lines whole and in order)", async () => {
    const file = await tempFile();
    const { destination, logger } = await batched(file);
    const writer = createLineWriter(logger, "info", "access");
    // Batches handed over while earlier ones are still being written: laps start behind them.
    const count = 20_000;
    for (let i = 0; i < count; i++) {
      writer.write(`,"i":${i},"pad":"${"z".repeat((i * 7) % 90)}"`);
      if (i % 25 === 24) await new Promise((r) => setImmediate(r));
    }
    destination.end();
    const lines = await linesOf(file, count);
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(
      Array.from({ length: count }, (_, k) => k),
    );
  });

  it("keeps every line whole and in order on a pipe that is not read for a while (EAGAIN)", async () => {
    const fifo = join(dirname(await tempFile()), "pipe");
    execFileSync("mkfifo", [fifo]);
    const { O_NONBLOCK, O_RDONLY, O_WRONLY } = constants;
    const reader = openSync(fifo, O_RDONLY | O_NONBLOCK);
    const fd = openSync(fifo, O_WRONLY | O_NONBLOCK);
    const destination = createLogDestination({ dest: fd, batch: true, batchBytes: BATCH, flushMs: 60_000 });
    const writer = createLineWriter(createLogger({ service: "t", destination }), "info", "access");
    // The pipe (64 KiB) is read only half the rounds: sonic-boom's writes fail with EAGAIN
    // (retried after 100 ms) while batches keep coming, and the slab's laps start behind the
    // bytes still queued. Lines of 60 to ~250 bytes, batches of 1 KiB.
    const chunks: Buffer[] = [];
    const read = (most: number) => {
      const buf = Buffer.allocUnsafe(most);
      let got = 0;
      while (got < most) {
        let n = 0;
        try {
          n = readSync(reader, buf, got, most - got, null);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "EAGAIN") break;
          throw err;
        }
        if (n === 0) break;
        got += n;
      }
      chunks.push(Buffer.from(buf.subarray(0, got)));
    };
    const count = 24_000;
    for (let i = 0; i < count; i++) {
      writer.write(`,"i":${i},"pad":"${"p".repeat((i * 13) % 190)}"`);
      if (i % 100 === 99) {
        if (Math.floor(i / 100) % 16 < 8) read(5_000 + ((i * 7919) % 20_000));
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    destination.end();
    const ids: number[] = [];
    await waitFor(
      () => {
        read(1024 * 1024);
        const text = Buffer.concat(chunks).toString("utf8");
        return text.split("\n").length - 1 >= count;
      },
      { timeoutMs: 20_000, what: `${count} lines through the pipe` },
    );
    for (const line of Buffer.concat(chunks).toString("utf8").split("\n").filter(Boolean)) {
      ids.push((JSON.parse(line) as { i: number }).i);
    }
    closeSync(reader);
    expect(ids).toEqual(Array.from({ length: count }, (_, k) => k));
  }, 30_000);

  it("keeps every line whole and in order when the file's writes lag, write part of what they are given, or fail with EAGAIN", async () => {
    const file = await tempFile();
    const { destination, logger } = await batched(file);
    const { fd } = destination as unknown as { fd: number };
    // The destination's writes, as a slow device's: each completes 0-2 ms late, writes a part
    // of what it was given (sonic-boom writes the rest from where it stopped), or fails with
    // EAGAIN (sonic-boom tries the same bytes again 100 ms later), in a fixed pseudo-random order.
    const write = fs.write;
    let seed = 23;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const seen = { partial: 0, eagain: 0 };
    vi.spyOn(fs, "write").mockImplementation(((target: number, data: Buffer, ...rest: unknown[]) => {
      const cb = rest.at(-1) as (err: NodeJS.ErrnoException | null, n?: number) => void;
      if (target !== fd || rest.length !== 1 || data.length === 0)
        return (write as (...a: unknown[]) => void)(target, data, ...rest);
      const roll = random(100);
      if (roll < 3) {
        seen.eagain++;
        const err = Object.assign(new Error("EAGAIN"), { code: "EAGAIN" });
        setTimeout(() => cb(err), random(3));
        return;
      }
      const length = roll < 50 ? 1 + random(data.length) : data.length;
      if (length < data.length) seen.partial++;
      write(target, data, 0, length, null, (err, n) => setTimeout(() => cb(err, n), random(3)));
    }) as typeof fs.write);
    const writer = createLineWriter(logger, "info", "access");
    const count = 20_000;
    for (let i = 0; i < count; i++) {
      writer.write(`,"i":${i},"pad":"${"q".repeat((i * 11) % 170)}"`);
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    destination.end();
    const lines = await linesOf(file, count);
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(
      Array.from({ length: count }, (_, k) => k),
    );
    expect(seen.partial).toBeGreaterThan(20);
    expect(seen.eagain).toBeGreaterThan(2);
  }, 30_000);

  it("calls a flush back only once the lines gathered before it are written, also when it comes during a write", async () => {
    const file = await tempFile();
    const { destination, logger } = await batched(file);
    const writer = createLineWriter(logger, "info", "access");
    // A full batch starts a write; the few lines after it are queued behind that write when the
    // flush comes. sonic-boom calls a flush back at its next "drain", which it emits after that
    // write when what is queued is under minLength (a batch): the queued lines were left to the
    // periodic flush (60 s here), and a shutdown that awaited the flush, then exited, raced them.
    const sonic = destination as unknown as { _writing: boolean };
    let i = 0;
    while (!sonic._writing) writer.write(`,"i":${i++},"pad":"${"w".repeat(60)}"`);
    for (let k = 0; k < 3; k++) writer.write(`,"i":${i++},"pad":"${"w".repeat(60)}"`);
    await new Promise<void>((resolve, reject) => destination.flush((e) => (e ? reject(e) : resolve())));
    const lines = readFileSync(file, "utf8").split("\n").filter(Boolean);
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(
      Array.from({ length: i }, (_, k) => k),
    );
    destination.end();
  });

  it("writes what a flush without a callback finds queued behind a write once that write is done", async () => {
    const file = await tempFile();
    const { destination, logger } = await batched(file);
    const writer = createLineWriter(logger, "info", "access");
    // As above, without a callback (sonic-boom's periodic flush, a caller's last flush()): the
    // lines queued behind the write waited for the next periodic flush (60 s here), so a line
    // could wait up to twice the flush interval.
    const sonic = destination as unknown as { _writing: boolean };
    let i = 0;
    while (!sonic._writing) writer.write(`,"i":${i++},"pad":"${"v".repeat(60)}"`);
    for (let k = 0; k < 3; k++) writer.write(`,"i":${i++},"pad":"${"v".repeat(60)}"`);
    destination.flush();
    const lines = await linesOf(file, i);
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(
      Array.from({ length: i }, (_, k) => k),
    );
    destination.end();
  });

  it("calls a flush back that comes before its file is open, with nothing logged, and goes on writing", async () => {
    const file = await tempFile();
    const destination = createLogDestination({ dest: file, batch: true, batchBytes: BATCH, flushMs: 60_000 });
    // sonic-boom's buffer mode, asked to flush while it opens its file with nothing queued, took
    // the bytes of a write that was not there once the file opened: an uncaught TypeError.
    let flushed: Error | null | undefined;
    destination.flush((err) => {
      flushed = err ?? null;
    });
    await waitFor(() => flushed !== undefined, { timeoutMs: 5_000, what: "the flush's callback" });
    expect(flushed).toBeNull();
    createLogger({ service: "t", destination }).info({ i: 1 }, "after");
    destination.flush();
    const lines = await linesOf(file, 1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ i: 1, msg: "after" });
    destination.end();
  });

  it("keeps multi-byte characters whole across batches, and writes a line longer than a batch", async () => {
    const file = await tempFile();
    const { destination, logger } = await batched(file);
    // 3-byte (€) and 4-byte (a surrogate pair) characters, lines of varying lengths so that
    // batch ends fall everywhere; a line of ~6 KiB, more than a whole batch, in the middle.
    const texts: string[] = [];
    for (let i = 0; i < 60; i++) texts.push(`${"€".repeat(i % 17)}${"😀".repeat(i % 5)}ä${i}`);
    texts.splice(30, 0, "€😀".repeat(1000));
    for (const text of texts) logger.info({ text }, "line");
    destination.flush();
    const lines = await linesOf(file, texts.length);
    expect(lines.map((l) => (JSON.parse(l) as { text: string }).text)).toEqual(texts);
    destination.end();
  });
});
