import { describe, expect, it } from "vitest";
import { type SoakWindow, slope, soakVerdict } from "./soak-verdict.js";

const windows = (p99: number[], rss: number[], errors = 0): SoakWindow[] =>
  p99.map((p, i) => ({
    atS: (i + 1) * 60,
    calls: 1000,
    errors: i === 2 ? errors : 0,
    p50Ms: p / 3,
    p99Ms: p,
    rssMb: { orders: rss[i] ?? 0 },
  }));

describe("the soak verdict", () => {
  it("passes a flat run with noise", () => {
    const v = soakVerdict(windows([90, 30, 31, 29, 32, 30, 31], [120, 100, 104, 99, 103, 100, 102]));
    expect(v.reasons).toEqual([]);
    expect(v.pass).toBe(true);
  });
  it("fails on errors, on p99 drift past 20%, and on memory that keeps growing", () => {
    expect(soakVerdict(windows([30, 30, 30, 30], [100, 100, 100, 100], 3)).reasons).toEqual([
      "3 calls failed",
    ]);
    const slow = soakVerdict(windows([30, 30, 30, 33, 36, 40, 45], [100, 100, 100, 100, 100, 100, 100]));
    expect(slow.pass).toBe(false);
    expect(slow.reasons[0]).toMatch(/^p99 drifted 33%/);
    const leak = soakVerdict(windows([30, 30, 30, 30, 30, 30, 30], [100, 110, 120, 130, 140, 150, 160]));
    expect(leak.pass).toBe(false);
    expect(leak.reasons).toEqual(["orders grew 50 MB over the run (from 110 MB)"]);
    expect(leak.memoryGrowthMb.orders).toBeCloseTo(50);
  });
  it("fits a least-squares slope", () => {
    expect(
      slope([
        [0, 1],
        [1, 3],
        [2, 5],
      ]),
    ).toBeCloseTo(2);
    expect(slope([[0, 5]])).toBe(0);
  });
});
