import { describe, expect, it } from "vitest";
import { createWatchdog, DeadlineError, StallError, withDeadline } from "./watchdog.js";

describe("withDeadline", () => {
  it("settles a call that never settles, aborting its signal with the reason", async () => {
    let seen: AbortSignal | undefined;
    const never = withDeadline("a call", 30, (signal) => {
      seen = signal;
      return new Promise<never>(() => {});
    });
    await expect(never).rejects.toThrow(DeadlineError);
    await expect(never).rejects.toThrow("a call: not settled after 30 ms");
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).toBeInstanceOf(DeadlineError);
  });

  it("passes a result or an error through before the deadline", async () => {
    await expect(withDeadline("x", 1_000, async () => 7)).resolves.toBe(7);
    await expect(withDeadline("x", 1_000, async () => Promise.reject(new Error("boom")))).rejects.toThrow(
      "boom",
    );
  });
});

describe("the watchdog", () => {
  it("fails with the dump when nothing progresses, and stays quiet while something does", async () => {
    const quiet = createWatchdog({ stallMs: 200, what: "busy run", dump: async () => "never taken" });
    const beat = setInterval(() => quiet.progress(), 20);
    const outcome = await Promise.race([
      quiet.fired.then(
        () => "fired",
        () => "fired",
      ),
      new Promise((r) => setTimeout(() => r("quiet"), 600)),
    ]);
    clearInterval(beat);
    quiet.stop();
    expect(outcome).toBe("quiet");

    const stalled = createWatchdog({
      stallMs: 50,
      what: "stalled run",
      dump: async () => "client #0: awaiting X",
    });
    const err = await stalled.fired.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StallError);
    expect(String(err)).toMatch(/stalled run: no progress for \d+ ms\nclient #0: awaiting X/);
  });

  it("reports a dump that hangs instead of hanging with it", async () => {
    const w = createWatchdog({
      stallMs: 20,
      dumpMs: 50,
      what: "run",
      dump: () => new Promise<never>(() => {}),
    });
    await expect(w.fired).rejects.toThrow(/no dump: DeadlineError: the stall dump: not settled after 50 ms/);
  });
});
