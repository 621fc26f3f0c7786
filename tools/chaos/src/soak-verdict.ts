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
  /** The machine's one-minute load average at the window's end (a shared machine moves p99). */
  load1?: number;
}

export interface SoakVerdict {
  pass: boolean;
  errors: number;
  /** p99 of the last third of the windows over the first third's, minus 1 (0.2: 20% slower). */
  p99Drift: number;
  /** Per process: growth after the warm-up (MB) from a least-squares line through its samples. */
  memoryGrowthMb: Record<string, number>;
  /** The warm-up left out of the latency and memory judgements (seconds from the start of the load). */
  warmupS: number;
  /** How many windows were judged (those that began once the warm-up was over). */
  judgedWindows: number;
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
 * The warm-up a run of `runS` seconds leaves out of its verdict: a fifth of the run, at most five
 * minutes. Node processes grow for minutes after load begins (JIT code, V8's heap settling on its
 * size under this allocation rate, pools and caches filling): a 3-minute run measured the driver
 * +38 MB and orders +19 MB within its first window alone, which is start-up, not a leak.
 */
export const defaultWarmupS = (runS: number) => Math.min(300, runS / 5);

/**
 * Pass or fail: no errors (over the whole run, warm-up included); p99 drift at most `maxDrift`
 * (20%, last third of the judged windows against the first third); memory flat, meaning no
 * process grows by more than `maxGrowth` of its first judged sample (and more than `floorMb`)
 * along its fitted line. Latency and memory are judged on the windows that begin at or after
 * `warmupS` seconds; a run that leaves fewer than three of them fails as too short to judge.
 */
export function soakVerdict(
  windows: readonly SoakWindow[],
  limits: { maxDrift?: number; maxGrowth?: number; floorMb?: number; warmupS?: number } = {},
): SoakVerdict {
  const maxDrift = limits.maxDrift ?? 0.2;
  const maxGrowth = limits.maxGrowth ?? 0.1;
  const floorMb = limits.floorMb ?? 16;
  const warmupS = limits.warmupS ?? defaultWarmupS(windows.at(-1)?.atS ?? 0);
  const reasons: string[] = [];
  const errors = windows.reduce((a, w) => a + w.errors, 0);
  if (errors > 0) reasons.push(`${errors} calls failed`);
  // A window begins where the one before it ended.
  const steady = windows.filter((_, i) => (i === 0 ? 0 : (windows[i - 1]?.atS ?? 0)) >= warmupS);
  if (steady.length < 3)
    reasons.push(
      `only ${steady.length} windows after the ${warmupS.toFixed(0)} s warm-up: too short to judge`,
    );
  const third = Math.max(1, Math.floor(steady.length / 3));
  const first = median(steady.slice(0, third).map((w) => w.p99Ms));
  const last = median(steady.slice(-third).map((w) => w.p99Ms));
  const p99Drift = first > 0 ? last / first - 1 : 0;
  if (p99Drift > maxDrift)
    reasons.push(
      `p99 drifted ${(p99Drift * 100).toFixed(0)}% (${first.toFixed(1)} -> ${last.toFixed(1)} ms)`,
    );
  const memoryGrowthMb = memoryGrowth(steady);
  for (const [name, { growth, start }] of Object.entries(memoryGrowthMb))
    if (growth > floorMb && growth > start * maxGrowth)
      reasons.push(`${name} grew ${growth.toFixed(0)} MB after the warm-up (from ${start.toFixed(0)} MB)`);
  return {
    pass: reasons.length === 0,
    errors,
    p99Drift,
    memoryGrowthMb: Object.fromEntries(Object.entries(memoryGrowthMb).map(([k, v]) => [k, v.growth])),
    warmupS,
    judgedWindows: steady.length,
    reasons,
  };
}

/** Per process: its first sample and its growth along the least-squares line over the windows' span. */
function memoryGrowth(steady: readonly SoakWindow[]): Record<string, { growth: number; start: number }> {
  const out: Record<string, { growth: number; start: number }> = {};
  const span = (steady.at(-1)?.atS ?? 0) - (steady[0]?.atS ?? 0);
  for (const name of Object.keys(steady[0]?.rssMb ?? {})) {
    const pts = steady.flatMap((w) =>
      w.rssMb[name] === undefined ? [] : [[w.atS, w.rssMb[name]] as [number, number]],
    );
    out[name] = { growth: slope(pts) * span, start: pts[0]?.[1] ?? 0 };
  }
  return out;
}
