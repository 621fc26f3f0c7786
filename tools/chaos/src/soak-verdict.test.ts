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
    const slow = soakVerdict(windows([30, 30, 30, 33, 36, 40, 45], [100, 100, 100, 100, 100, 100, 100]), {
      warmupS: 60,
    });
    expect(slow.pass).toBe(false);
    expect(slow.reasons[0]).toMatch(/^p99 drifted 33%/);
    const leak = soakVerdict(windows([30, 30, 30, 30, 30, 30, 30], [100, 110, 120, 130, 140, 150, 160]), {
      warmupS: 60,
    });
    expect(leak.pass).toBe(false);
    expect(leak.reasons).toEqual(["orders grew 50 MB after the warm-up (from 110 MB)"]);
    expect(leak.memoryGrowthMb.orders).toBeCloseTo(50);
  });
  it("leaves growth within the stated warm-up out of the memory and latency judgement, and says which windows it judged", () => {
    // 30 one-minute windows: orders grows 40 MB and p99 is high in the first five minutes (start-up),
    // then stays flat. The default warm-up of a 30-minute run is 5 minutes.
    const rss = Array.from({ length: 30 }, (_, i) => (i < 5 ? 100 + i * 10 : 140 + (i % 2)));
    const p99 = Array.from({ length: 30 }, (_, i) => (i < 5 ? 90 : 30 + (i % 3)));
    const v = soakVerdict(windows(p99, rss));
    expect(v.warmupS).toBe(300);
    expect(v.judgedWindows).toBe(25);
    expect(v.reasons).toEqual([]);
    // The same run judged from its first window fails on the start-up growth.
    expect(soakVerdict(windows(p99, rss), { warmupS: 0 }).reasons).toEqual([
      expect.stringMatching(/^orders grew \d+ MB after the warm-up/),
    ]);
    // Growth that goes on after the warm-up still fails.
    const leak = Array.from({ length: 30 }, (_, i) => 100 + i * 2);
    expect(soakVerdict(windows(p99, leak)).reasons).toEqual([
      "orders grew 48 MB after the warm-up (from 110 MB)",
    ]);
  });
  it("fails a run too short to leave three windows after its warm-up", () => {
    const v = soakVerdict(windows([30, 30, 30], [100, 100, 100]), { warmupS: 120 });
    expect(v.pass).toBe(false);
    expect(v.reasons).toEqual(["only 1 windows after the 120 s warm-up: too short to judge"]);
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
