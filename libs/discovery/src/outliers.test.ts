import { describe, expect, it } from "vitest";
import { isEjected, newOutlierState, type OutlierPolicy, recordFailure, recordSuccess } from "./outliers.js";

const policy: OutlierPolicy = {
  consecutiveFailures: 3,
  baseEjectionMs: 1_000,
  maxEjectionMs: 4_000,
  maxEjectedPercent: 50,
};

describe("outlier ejection", () => {
  it("ejects after the consecutive failures; a success in between starts the run again", () => {
    const s = newOutlierState();
    expect(recordFailure(s, policy, 0)).toBe(0);
    expect(recordFailure(s, policy, 0)).toBe(0);
    recordSuccess(s);
    expect(recordFailure(s, policy, 0)).toBe(0);
    expect(recordFailure(s, policy, 0)).toBe(0);
    expect(isEjected(s, 0)).toBe(false);
    expect(recordFailure(s, policy, 0)).toBe(1_000);
    expect(isEjected(s, 999)).toBe(true);
    expect(isEjected(s, 1_000)).toBe(false);
  });

  it("doubles each further ejection up to the maximum, and starts from the base once back long enough", () => {
    const s = newOutlierState();
    const ejectAt = (now: number) => {
      recordFailure(s, policy, now);
      recordFailure(s, policy, now);
      return recordFailure(s, policy, now);
    };
    expect(ejectAt(0)).toBe(1_000);
    expect(ejectAt(1_000)).toBe(2_000);
    expect(ejectAt(3_000)).toBe(4_000);
    expect(ejectAt(7_000)).toBe(4_000); // capped
    // In since 11,000; more than maxEjectionMs later, a new ejection is short again.
    expect(ejectAt(11_000 + 4_001)).toBe(1_000);
  });

  it("never ejects more than the share, but always one", () => {
    const ejected = (ejectedNow: number, total: number) => {
      const s = newOutlierState();
      recordFailure(s, policy, 0, { ejectedNow, total });
      recordFailure(s, policy, 0, { ejectedNow, total });
      return recordFailure(s, policy, 0, { ejectedNow, total }) > 0;
    };
    expect(ejected(0, 1)).toBe(true); // one may always go
    expect(ejected(0, 2)).toBe(true);
    expect(ejected(1, 2)).toBe(false); // 50% of 2 is one
    expect(ejected(1, 4)).toBe(true);
    expect(ejected(2, 4)).toBe(false);
    expect(ejected(4, 10)).toBe(true);
    expect(ejected(5, 10)).toBe(false);
  });
});
