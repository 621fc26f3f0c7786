/** One sampling window of a soak run. */
export interface SoakWindow {
  /** Seconds since the load began, at the window's end. */
  atS: number;
  calls: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  /** Resident memory per process (MB) at the window's end. */
  rssMb: Record<string, number>;
}

export interface SoakVerdict {
  pass: boolean;
  errors: number;
  /** p99 of the last third of the windows over the first third's, minus 1 (0.2: 20% slower). */
  p99Drift: number;
  /** Per process: growth over the run (MB) from a least-squares line through its samples. */
  memoryGrowthMb: Record<string, number>;
  reasons: string[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : (s[Math.floor((s.length - 1) / 2)] as number);
};

/** The slope of the least-squares line through (x, y), per unit of x. */
export function slope(points: ReadonlyArray<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * Pass or fail: no errors; p99 drift at most `maxDrift` (20%); memory flat, meaning no process
 * grows by more than `maxGrowth` of its first sample (and more than `floorMb`) along its fitted
 * line over the run. The first window is warm-up (JIT, pools, caches) and left out of both.
 */
export function soakVerdict(
  windows: readonly SoakWindow[],
  limits: { maxDrift?: number; maxGrowth?: number; floorMb?: number } = {},
): SoakVerdict {
  const maxDrift = limits.maxDrift ?? 0.2;
  const maxGrowth = limits.maxGrowth ?? 0.1;
  const floorMb = limits.floorMb ?? 16;
  const reasons: string[] = [];
  const errors = windows.reduce((a, w) => a + w.errors, 0);
  if (errors > 0) reasons.push(`${errors} calls failed`);
  const steady = windows.length > 2 ? windows.slice(1) : [...windows];
  const third = Math.max(1, Math.floor(steady.length / 3));
  const first = median(steady.slice(0, third).map((w) => w.p99Ms));
  const last = median(steady.slice(-third).map((w) => w.p99Ms));
  const p99Drift = first > 0 ? last / first - 1 : 0;
  if (p99Drift > maxDrift)
    reasons.push(
      `p99 drifted ${(p99Drift * 100).toFixed(0)}% (${first.toFixed(1)} -> ${last.toFixed(1)} ms)`,
    );
  const memoryGrowthMb: Record<string, number> = {};
  const span = (steady.at(-1)?.atS ?? 0) - (steady[0]?.atS ?? 0);
  for (const name of Object.keys(steady[0]?.rssMb ?? {})) {
    const pts = steady.flatMap((w) =>
      w.rssMb[name] === undefined ? [] : [[w.atS, w.rssMb[name]] as [number, number]],
    );
    const growth = slope(pts) * span;
    memoryGrowthMb[name] = growth;
    const start = pts[0]?.[1] ?? 0;
    if (growth > floorMb && growth > start * maxGrowth)
      reasons.push(`${name} grew ${growth.toFixed(0)} MB over the run (from ${start.toFixed(0)} MB)`);
  }
  return { pass: reasons.length === 0, errors, p99Drift, memoryGrowthMb, reasons };
}
