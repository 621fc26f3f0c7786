import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createLineWriter, jsonString } from "./log-line.js";
import { createLogger } from "./logger.js";

/** A destination keeping each line as written (not parsed). */
function rawLines() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(line);
      done();
    },
  });
  return { lines, destination };
}

/** A line without its time (two lines a millisecond apart differ there only). */
function withoutTime(line: string): string {
  return line.replace(/,"time":"[^"]*"/, "");
}

describe("createLineWriter", () => {
  it("writes the line pino writes for the same fields: key order, bindings, escapes, msg", () => {
    const { lines, destination } = rawLines();
    const logger = createLogger({ service: "gateway", destination });
    const child = logger.child({ component: "proxy" });
    const fields = {
      method: '/a"b\\c\n\u0001é',
      status: "OK",
      duration_ms: 1.25,
      bytes_in: 0,
    };
    for (const l of [logger, child]) {
      l.info(fields, "access");
      createLineWriter(l, "info", "access").write(
        `,"method":${jsonString(fields.method)},"status":${jsonString(fields.status)},"duration_ms":${fields.duration_ms},"bytes_in":${fields.bytes_in}`,
      );
    }
    expect(lines).toHaveLength(4);
    expect(withoutTime(lines[1] as string)).toBe(withoutTime(lines[0] as string));
    expect(withoutTime(lines[3] as string)).toBe(withoutTime(lines[2] as string));
    expect(JSON.parse(lines[3] as string)).toMatchObject({
      ...fields,
      component: "proxy",
      service: "gateway",
    });
    expect(JSON.parse(lines[1] as string).time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("follows the logger's level as it changes, and keeps the order of the logger's own lines", () => {
    const { lines, destination } = rawLines();
    const logger = createLogger({ service: "t", level: "warn", destination });
    const writer = createLineWriter(logger, "info", "access");
    expect(writer.enabled()).toBe(false);
    logger.level = "info";
    expect(writer.enabled()).toBe(true);
    logger.info("before");
    writer.write(`,"n":1`);
    logger.warn("after");
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["before", "access", "after"]);
    expect(JSON.parse(lines[1] as string)).toMatchObject({ level: "info", n: 1, service: "t" });
  });

  it("refuses a pino.multistream destination, which routes lines by pino's own last level", () => {
    const logger = createLogger({
      service: "t",
      destination: pino.multistream([{ stream: rawLines().destination }]),
    });
    expect(() => createLineWriter(logger, "info", "access")).toThrow(/multistream/);
  });
});
