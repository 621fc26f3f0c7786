import { describe, expect, it } from "vitest";
import { describeBatches, percentile } from "./events-stats.js";

describe("describeBatches", () => {
  it("gives the batch sizes' percentiles and the share of events in batches under 64", () => {
    // 10 batches: 8 full ones and 2 of 16 events; 32 of 2080 events are in small batches.
    const shape = describeBatches([256, 16, 256, 256, 256, 16, 256, 256, 256, 256]);
    expect(shape).toEqual({ p10: 16, p50: 256, p90: 256, eventsInSmallBatchesPct: 2 });
  });

  it("tells a run of small batches from a run of full ones", () => {
    expect(describeBatches(Array.from({ length: 100 }, () => 50)).eventsInSmallBatchesPct).toBe(100);
    expect(describeBatches([64, 64]).eventsInSmallBatchesPct).toBe(0);
  });

  it("reports no batches as NaN percentiles and 0%", () => {
    const shape = describeBatches([]);
    expect(shape.p50).toBeNaN();
    expect(shape.eventsInSmallBatchesPct).toBe(0);
  });
});

describe("percentile", () => {
  it("reads an ascending array", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4], 99)).toBe(4);
  });
});
