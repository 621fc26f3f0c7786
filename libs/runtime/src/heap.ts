import v8 from "node:v8";

/**
 * How much V8 lets the old generation grow between full (mark-compact) GCs, in percent of what
 * was live after the last one. V8's own choice (0 here) is a factor of up to 4 when its GC looks
 * fast next to the program.
 *
 * Why the runtime sets it: Node turns every incoming HTTP/2 header value into an external string,
 * and V8 allocates external strings straight in the old generation, so a serving process fills
 * its old generation with garbage at a steady rate that only a full GC frees, and each full GC
 * pauses to finalize all of them. With a factor of 4 those pauses are rare and long. Measured on
 * the runtime's bench fixture at its maximum rate (about 27k calls/s, 6 s, pinned to one CPU):
 * V8's own choice: 2 full GCs of 44-81 ms, heap up to 81 MB; 100: 5 of 31-49 ms, 57 MB; 50: 10 of
 * 19-29 ms, 46 MB; 25: 13 of 15-23 ms, 43 MB; throughput the same within noise in all four.
 */
export const DEFAULT_HEAP_GROWING_PERCENT = 50;

/**
 * Sets V8's `--heap-growing-percent` for this process: read by V8 each time it recomputes its
 * heap limits, so it applies from the next full GC on. 0 gives the choice back to V8.
 */
export function setHeapGrowingPercent(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 1000) {
    throw new RangeError(`heap growing percent must be an integer in [0, 1000], got ${percent}`);
  }
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}
