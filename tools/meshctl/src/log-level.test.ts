import { describe, expect, it } from "vitest";
import { childLogLevel, lineLevel, parseLogLevel, shownAt } from "./log-level.js";

describe("up's log levels", () => {
  it("runs the processes at info at least, so their listening line reaches up", () => {
    expect(childLogLevel("warn")).toBe("info");
    expect(childLogLevel("silent")).toBe("info");
    expect(childLogLevel("info")).toBe("info");
    expect(childLogLevel("debug")).toBe("debug");
  });

  it("reads the level of both log shapes and keeps lines that are not logs", () => {
    expect(lineLevel('{"level":"warn","time":"x","msg":"m"}')).toBe(40);
    expect(lineLevel('{"level":30,"time":1,"msg":"m"}')).toBe(30);
    expect(lineLevel("    at Object.<anonymous> (/x.js:1:1)")).toBeUndefined();
    expect(shownAt('{"level":"info","msg":"listening"}', "warn")).toBe(false);
    expect(shownAt('{"level":50,"msg":"boom"}', "warn")).toBe(true);
    expect(shownAt("Error: not JSON", "fatal")).toBe(true);
    expect(shownAt('{"level":"debug","msg":"d"}', "debug")).toBe(true);
  });

  it("refuses a level no process accepts, naming the ones it takes", () => {
    expect(parseLogLevel("error")).toBe("error");
    expect(() => parseLogLevel("verbose")).toThrow(
      '--log-level: "verbose" is not one of trace, debug, info, warn, error, fatal, silent',
    );
  });
});
