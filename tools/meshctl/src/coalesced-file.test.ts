import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CoalescedFile } from "./coalesced-file.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "meshctl-coalesced-"));
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

/** A file of `state` (pids urgent, health not) that counts its renders of the text. */
function fixture() {
  const state = { pids: "1", health: "STARTING" };
  const file = join(dir, "supervisor.json");
  const counts = { renders: 0 };
  const coalesced = new CoalescedFile(
    file,
    {
      text: () => {
        counts.renders += 1;
        return `${state.pids} ${state.health}`;
      },
      urgent: () => state.pids,
    },
    100,
  );
  const written = () => (existsSync(file) ? readFileSync(file, "utf8") : undefined);
  return { state, coalesced, written, counts };
}

describe("CoalescedFile", () => {
  it("writes a burst of urgent changes once, on the next tick, with the last state", () => {
    const { state, coalesced, written } = fixture();
    for (const pids of ["1", "1,2", "1,2,3"]) {
      state.pids = pids;
      coalesced.changed();
    }
    expect(written()).toBeUndefined();
    vi.advanceTimersToNextTimer();
    expect(written()).toBe("1,2,3 STARTING");
  });

  it("holds other changes for the throttle time, then writes the last one", () => {
    const { state, coalesced, written } = fixture();
    coalesced.flush();
    for (const health of ["NOT_SERVING", "SERVING"]) {
      state.health = health;
      coalesced.changed();
    }
    vi.advanceTimersByTime(99);
    expect(written()).toBe("1 STARTING");
    vi.advanceTimersByTime(1);
    expect(written()).toBe("1 SERVING");
  });

  it("writes a pid change on the next tick even while a throttled write waits", () => {
    const { state, coalesced, written } = fixture();
    coalesced.flush();
    state.health = "SERVING";
    coalesced.changed();
    state.pids = "2";
    coalesced.changed();
    vi.advanceTimersByTime(1);
    expect(written()).toBe("2 SERVING");
  });

  it("after settle, writes every change on the next tick; cancel drops a pending write", () => {
    const { state, coalesced, written } = fixture();
    state.health = "SERVING";
    coalesced.settle();
    expect(written()).toBe("1 SERVING");
    state.health = "NOT_SERVING";
    coalesced.changed();
    vi.advanceTimersByTime(1);
    expect(written()).toBe("1 NOT_SERVING");
    state.pids = "3";
    coalesced.changed();
    coalesced.cancel();
    vi.advanceTimersByTime(1_000);
    expect(written()).toBe("1 NOT_SERVING");
  });

  // Read-through hmend: the whole report was rendered at each change (to compare its urgent part)
  // and again when written; it is rendered once per write, never for a change alone.
  it("renders the text once per write, whatever the number of changes", () => {
    const { state, coalesced, written, counts } = fixture();
    for (const pids of ["1,2", "1,2,3"]) {
      state.pids = pids;
      coalesced.changed();
    }
    for (const health of ["NOT_SERVING", "SERVING"]) {
      state.health = health;
      coalesced.changed();
    }
    expect(counts.renders).toBe(0);
    vi.advanceTimersToNextTimer();
    expect(written()).toBe("1,2,3 SERVING");
    expect(counts.renders).toBe(1);
    state.health = "NOT_SERVING";
    coalesced.changed();
    coalesced.changed();
    expect(counts.renders).toBe(1);
    vi.advanceTimersByTime(100);
    expect(written()).toBe("1,2,3 NOT_SERVING");
    expect(counts.renders).toBe(2);
    coalesced.settle();
    expect(counts.renders).toBe(3);
  });
});
