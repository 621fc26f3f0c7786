import v8 from "node:v8";

/**
 * How much V8 lets the old generation grow between full (mark-compact) GCs, in percent of what
 * was live after the last one (`GC_HEAP_GROWING_PERCENT`). Unset, the runtime leaves it alone:
 * V8 picks a factor of up to 4 when its GC looks fast next to the program (or takes
 * `node --heap-growing-percent=N` from the command line); 0 sets V8's own choice back.
 *
 * Why it matters for a server: Node turns every incoming HTTP/2 header value into an external
 * string, and V8 allocates external strings straight in the old generation. So a busy process
 * fills its old generation with garbage at a steady rate that only a full GC frees, and each full
 * GC pauses to finalize all of it. V8's own factor makes those pauses rare and long; a small
 * percent makes them frequent and short, which costs more GC time in all and more requests see
 * one. Measured on the runtime's bench fixture (pinned to one CPU), 12k calls/s for 30 s:
 * - 0 (V8): full GCs of 128-140 ms every 10 s or so; p99 11.8 ms, p99.9 170 ms, max 180 ms.
 * - 50: 21-30 ms every 1.4 s; p99 43 ms, p99.9 56 ms, max 58 ms.
 * - 25: 16-24 ms every 1 s; p99 39 ms, p99.9 50 ms, max 56 ms.
 * At the maximum rate (about 27k calls/s) throughput was the same within noise for 0, 25, 50 and
 * 100, and the heap before a full GC peaked at 81, 43, 46 and 57 MB. So V8's choice keeps the
 * best p99 and throughput; set a percent to bound the worst pause and the memory.
 */
let current: number | undefined;

/** What {@link setHeapGrowingPercent} last set in this process; undefined if never. */
export function heapGrowingPercent(): number | undefined {
  return current;
}

/**
 * Sets V8's `--heap-growing-percent` for this process: read by V8 each time it recomputes its
 * heap limits, so it applies from the next full GC on. 0 gives the choice back to V8; undefined
 * (a configuration that does not set it) changes nothing.
 */
export function setHeapGrowingPercent(percent: number | undefined): void {
  if (percent === undefined) return;
  if (!Number.isInteger(percent) || percent < 0 || percent > 1000) {
    throw new RangeError(`heap growing percent must be an integer in [0, 1000], got ${percent}`);
  }
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  current = percent;
}
