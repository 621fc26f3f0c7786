import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { receiverFile, startLocalTelemetry } from "./local-telemetry.js";
import { linesFromFiles, logsCommand, receiverUrl, traceCommand } from "./traces.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const homes: string[] = [];
afterEach(() => {
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
});

function sink() {
  let text = "";
  return {
    stream: {
      write: (s: string) => {
        text += s;
        return true;
      },
    } as unknown as NodeJS.WritableStream,
    text: () => text,
  };
}

describe("the receiver `meshctl up` runs", () => {
  it("gives the processes OTEL env, notes its URL, keeps log lines by trace id in memory and in files", async () => {
    const home = mkdtempSync(join(tmpdir(), "mw-telemetry-"));
    homes.push(home);
    const t = await startLocalTelemetry({ home, address: "127.0.0.1:0" });
    try {
      expect(t.env).toEqual({
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: t.url,
        OTEL_BSP_SCHEDULE_DELAY: "1000",
      });
      expect(receiverUrl({ home })).toBe(t.url);
      expect(receiverUrl({ home, receiver: "http://elsewhere:1/" })).toBe("http://elsewhere:1");
      const line = (msg: string, ms: number) =>
        JSON.stringify({
          level: "info",
          time: new Date(ms).toISOString(),
          service: "orders",
          msg,
          trace_id: TRACE,
        });
      t.logLine("orders", line("second", 2000));
      t.logLine("users", "not json at all");
      t.logLine("orders", line("first", 1000));
      const out = sink();
      const err = sink();
      expect(await logsCommand({ home, traceId: TRACE, out: out.stream, err: err.stream })).toBe(0);
      expect(out.text()).toBe(
        "1970-01-01T00:00:01.000Z orders INFO  first\n1970-01-01T00:00:02.000Z orders INFO  second\n",
      );
      // An unknown trace is a clear message, not an empty screen.
      const missing = sink();
      expect(await traceCommand({ home, traceId: TRACE, out: out.stream, err: missing.stream })).toBe(1);
      expect(missing.text()).toBe(`trace ${TRACE} is not in the store\n`);
    } finally {
      await t.close();
    }
    expect(existsSync(receiverFile(home))).toBe(false);
    expect(readFileSync(join(home, "logs", "users.log"), "utf8")).toBe("not json at all\n");
    // With the mesh stopped, the files still answer.
    expect(linesFromFiles([join(home, "logs", "orders.log")], TRACE).map((l) => l.msg)).toEqual([
      "first",
      "second",
    ]);
  });

  it("refuses an address it cannot parse or bind, naming the flag", async () => {
    const home = mkdtempSync(join(tmpdir(), "mw-telemetry-"));
    homes.push(home);
    await expect(startLocalTelemetry({ home, address: "127.0.0.1:http" })).rejects.toThrow(
      '--otlp takes host:port or off, not "127.0.0.1:http"',
    );
    const first = await startLocalTelemetry({ home, address: "127.0.0.1:0" });
    try {
      const port = new URL(first.url).port;
      await expect(startLocalTelemetry({ home, address: `127.0.0.1:${port}` })).rejects.toThrow(
        /the trace receiver cannot listen on 127\.0\.0\.1:\d+ \(listen EADDRINUSE.*\): pass --otlp host:port, or --otlp off/,
      );
    } finally {
      await first.close();
    }
  });
});
