import { describe, expect, it } from "vitest";
import { startProcess } from "./process.js";

describe("startProcess", () => {
  it("names the process's last lines and its state when a wait times out", async () => {
    const p = startProcess(process.execPath, [
      "-e",
      'console.log(JSON.stringify({ msg: "started" })); console.log("plain line"); setInterval(() => {}, 1000);',
    ]);
    try {
      await p.waitForLine((l) => l === "plain line", 30_000);
      const err = await p.waitForLog((l) => l.msg === "never", 200).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/^timed out waiting for a log line from .*still running/s);
      expect((err as Error).message).toContain('{"msg":"started"}\nplain line');
    } finally {
      await p.stop("SIGKILL");
    }
    const err = await p.waitForLine((l) => l === "never", 200).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/exited SIGKILL/);
  });

  it("parses each JSON line once and keeps the order of the output", async () => {
    const p = startProcess(process.execPath, [
      "-e",
      'for (let i = 0; i < 3; i++) console.log(JSON.stringify({ i })); console.log("{not json"); console.log(JSON.stringify({ i: 3 }));',
    ]);
    await p.exited;
    await p.waitForLog((l) => l.i === 3);
    expect(p.logs()).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }, { i: 3 }]);
    // The same objects each time (parsed once), in a fresh array the caller may change.
    const first = p.logs();
    first.pop();
    expect(p.logs()).toHaveLength(4);
    expect(p.logs()[0]).toBe(first[0]);
  });
});
