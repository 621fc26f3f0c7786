import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import { afterAll, describe, expect, it } from "vitest";
import { parseEnv, runtimeEnvShape, toRuntimeConfig } from "./config.js";
import { heapGrowingPercent, setHeapGrowingPercent } from "./heap.js";

const isFullGc = (entry: PerformanceEntry) =>
  (entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;

/** Full GCs while `work` runs, as Node reports them (its `gc` performance entries). */
async function fullGcsDuring(work: () => void): Promise<number> {
  // Node delivers GC entries from an immediate after the GC: let earlier ones pass first.
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  let count = 0;
  const observer = new PerformanceObserver((list) => {
    count += list.getEntries().filter(isFullGc).length;
  });
  observer.observe({ entryTypes: ["gc"] });
  work();
  // And let those of `work` arrive.
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  count += observer.takeRecords().filter(isFullGc).length;
  observer.disconnect();
  return count;
}

/**
 * Old-generation garbage, as a server makes it: objects that live long enough to be promoted
 * (each stays in a ring for the next 128k allocations), then die there, where only a full GC
 * frees them. `count` objects of about 64 bytes.
 */
function oldGarbage(count: number): void {
  const size = 1 << 17;
  const ring = new Array<unknown>(size).fill(null);
  for (let i = 0; i < count; i++) ring[i & (size - 1)] = { i, pair: [i, i] };
}

describe("setHeapGrowingPercent", () => {
  afterAll(() => setHeapGrowingPercent(0));

  it("sets how far the heap grows between full GCs: a smaller percent means more, smaller full GCs", async () => {
    // Each change takes effect when V8 next sets its limit, at the end of a full GC: some
    // garbage first so that one has passed.
    setHeapGrowingPercent(300);
    oldGarbage(2_000_000);
    const loose = await fullGcsDuring(() => oldGarbage(8_000_000));
    setHeapGrowingPercent(20);
    oldGarbage(2_000_000);
    const tight = await fullGcsDuring(() => oldGarbage(8_000_000));
    // About 7 full GCs at 300% against 23 at 20% on this machine, loaded or not.
    expect(tight).toBeGreaterThanOrEqual(6);
    expect(tight).toBeGreaterThan(1.5 * loose);
    expect(heapGrowingPercent()).toBe(20);
  });

  it("leaves the setting alone for a configuration without one", () => {
    setHeapGrowingPercent(30);
    setHeapGrowingPercent(undefined);
    expect(heapGrowingPercent()).toBe(30);
  });

  it("refuses what V8 would not take as a percent", () => {
    for (const bad of [-1, 1.5, 1001, Number.NaN]) {
      expect(() => setHeapGrowingPercent(bad)).toThrow(
        /heap growing percent must be an integer in \[0, 1000\]/,
      );
    }
  });

  it("is configured by GC_HEAP_GROWING_PERCENT, unset by default (left to V8)", () => {
    const config = (env: Record<string, string>) =>
      toRuntimeConfig(parseEnv(runtimeEnvShape({ port: 1 }), env));
    expect(config({}).heapGrowingPercent).toBeUndefined();
    expect(config({ GC_HEAP_GROWING_PERCENT: "0" }).heapGrowingPercent).toBe(0);
    expect(config({ GC_HEAP_GROWING_PERCENT: "50" }).heapGrowingPercent).toBe(50);
    expect(config({ GC_HEAP_GROWING_PERCENT: "120" }).heapGrowingPercent).toBe(120);
    expect(() => config({ GC_HEAP_GROWING_PERCENT: "lots" })).toThrow(/GC_HEAP_GROWING_PERCENT/);
    expect(() => config({ GC_HEAP_GROWING_PERCENT: "-5" })).toThrow(/GC_HEAP_GROWING_PERCENT/);
  });
});
