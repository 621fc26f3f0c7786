/** The summaries the events benchmark prints. */

/** The value at percentile `p` (0-100) of an ascending array; NaN when it is empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/**
 * The sizes of the consumer's transactions in the pipeline phase. A consumer that keeps pace
 * with the relay applies what arrives while its previous batch commits: small batches, each
 * paying the transaction's fixed cost (four statements, a WAL flush), so its CPU and
 * Postgres's per event rise (the consumer's batch application alone, 16 events a batch against
 * 256: about 4x the JS and 3x the Postgres CPU per event). Printed to tell whether a slow run of
 * the pipeline had small batches.
 */
export function describeBatches(sizes: number[]): {
  p10: number;
  p50: number;
  p90: number;
  eventsInSmallBatchesPct: number;
} {
  const sorted = [...sizes].sort((a, b) => a - b);
  const total = sizes.reduce((a, b) => a + b, 0);
  const small = sizes.filter((n) => n < 64).reduce((a, b) => a + b, 0);
  return {
    p10: percentile(sorted, 10),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    eventsInSmallBatchesPct: total === 0 ? 0 : Math.round((100 * small) / total),
  };
}
