import { describe, expect, it, vi } from "vitest";
import { Deadlines, type HasDeadline } from "./deadlines.js";

function item(
  inMs: number,
  expired: string[],
  name: string,
  from = performance.now(),
): HasDeadline & { at: number } {
  const deadlineAt = from + inMs;
  return {
    deadlineAt,
    at: 0,
    expire() {
      this.at = performance.now();
      expired.push(name);
    },
  };
}

describe("Deadlines", () => {
  it("expires each item once its deadline passed, earliest first, not before", async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    // One clock reading for both, and far apart: a loaded machine that stalls between two
    // readings (or past both deadlines) must not swap them (CI: ['late', 'soon'] with 60/20 ms).
    const now = performance.now();
    const late = item(1_000, expired, "late", now);
    const soon = item(20, expired, "soon", now);
    deadlines.add(late);
    // Added after a later one: the one timer is moved earlier for it, so it expires alone.
    deadlines.add(soon);
    await vi.waitFor(() => expect(expired).toEqual(["soon"]), { timeout: 5_000, interval: 5 });
    await vi.waitFor(() => expect(expired).toEqual(["soon", "late"]), { timeout: 5_000, interval: 5 });
    expect(soon.at).toBeGreaterThanOrEqual(soon.deadlineAt - 1);
    expect(late.at).toBeGreaterThanOrEqual(late.deadlineAt - 1);
    expect(deadlines.size).toBe(0);
  });

  it("never expires an item removed before its deadline", async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const removed = item(10, expired, "removed");
    const kept = item(40, expired, "kept");
    deadlines.add(removed);
    deadlines.add(kept);
    deadlines.delete(removed);
    await vi.waitFor(() => expect(expired).toEqual(["kept"]), { timeout: 5_000, interval: 5 });
    expect(deadlines.size).toBe(0);
  });

  it("keeps working for items added by an expiry and after it went idle", async () => {
    const deadlines = new Deadlines();
    const expired: string[] = [];
    const second = item(30, expired, "second");
    const first = item(5, expired, "first");
    const expireFirst = first.expire.bind(first);
    first.expire = () => {
      expireFirst();
      deadlines.add(second);
    };
    deadlines.add(first);
    await vi.waitFor(() => expect(expired).toEqual(["first", "second"]), { timeout: 5_000, interval: 5 });
    const third = item(5, expired, "third");
    deadlines.add(third);
    await vi.waitFor(() => expect(expired).toEqual(["first", "second", "third"]), {
      timeout: 5_000,
      interval: 5,
    });
  });
});
