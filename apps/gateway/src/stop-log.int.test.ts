import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogDestination, createLogger } from "@meshwork/telemetry";
import { afterAll, describe, expect, it } from "vitest";
import { testGatewayConfig } from "../test/users-upstream.js";
import { createGateway } from "./gateway.js";

describe("stopping the gateway", () => {
  let dir = "";
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("resolves once its log lines are written (a batched log holds them up to its flush interval)", async () => {
    dir = await mkdtemp(join(tmpdir(), "gateway-stop-log-"));
    const file = join(dir, "gateway.log");
    // The periodic flush far away: only the stop itself can have written the lines.
    const destination = createLogDestination({ dest: file, batch: true, flushMs: 60_000 });
    await new Promise((r) => destination.once("ready", r));
    const logger = createLogger({ service: "gateway", destination });
    const gateway = createGateway({ config: testGatewayConfig("http://127.0.0.1:1"), logger });
    await gateway.start();
    // main.ts exits as soon as stop() resolves: pino's exit handler writes what is queued, but
    // not a write under way then (libuv's thread may not have written it before the exit).
    await gateway.stop();
    const lines = (await readFile(file, "utf8")).split("\n").filter(Boolean);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain("listening");
    destination.end();
  });
});
