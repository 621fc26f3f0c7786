/** One cache of one service, as its /metrics tells it. */
export interface CacheFigures {
  cache: string;
  l1: { hits: number; misses: number };
  l2: { hits: number; misses: number };
  loads: number;
  loadMsSum: number;
  evictions: number;
  /** 1 up, 0 in an outage, undefined without a shared tier. */
  sharedUp: number | undefined;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/;

function labels(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of (text ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
    if (m[1] !== undefined) out[m[1]] = m[2] ?? "";
  return out;
}

/** The `cache_*` series of a Prometheus text page (libs/cache's metrics), per cache. */
export function cacheFigures(metricsText: string): CacheFigures[] {
  const byCache = new Map<string, CacheFigures>();
  const of = (name: string) => {
    let f = byCache.get(name);
    if (!f) {
      f = {
        cache: name,
        l1: { hits: 0, misses: 0 },
        l2: { hits: 0, misses: 0 },
        loads: 0,
        loadMsSum: 0,
        evictions: 0,
        sharedUp: undefined,
      };
      byCache.set(name, f);
    }
    return f;
  };
  for (const line of metricsText.split("\n")) {
    if (!line.startsWith("cache_")) continue;
    const m = LINE.exec(line);
    if (!m?.[1]) continue;
    const l = labels(m[2]);
    const cache = l.cache;
    if (!cache) continue;
    const v = Number(m[3]);
    const name = m[1];
    const f = of(cache);
    if (name === "cache_requests_total") {
      const tier = l.tier === "l2" ? f.l2 : f.l1;
      if (l.result === "hit") tier.hits += v;
      else if (l.result === "miss") tier.misses += v;
    } else if (name.startsWith("cache_load_duration") && name.endsWith("_count")) f.loads += v;
    else if (name.startsWith("cache_load_duration") && name.endsWith("_sum")) f.loadMsSum += v;
    else if (name === "cache_evictions_total") f.evictions += v;
    else if (name === "cache_shared_up") f.sharedUp = v;
  }
  return [...byCache.values()];
}

const pct = (hits: number, misses: number) =>
  hits + misses === 0 ? "-" : `${((100 * hits) / (hits + misses)).toFixed(1)}%`;

/** Table rows: SERVICE CACHE L1-HIT L2-HIT LOADS AVG-LOAD EVICTIONS SHARED. */
export function cacheRows(service: string, figures: readonly CacheFigures[]): string[][] {
  return figures.map((f) => [
    service,
    f.cache,
    `${pct(f.l1.hits, f.l1.misses)} (${f.l1.hits}/${f.l1.hits + f.l1.misses})`,
    `${pct(f.l2.hits, f.l2.misses)} (${f.l2.hits}/${f.l2.hits + f.l2.misses})`,
    String(f.loads),
    f.loads > 0 ? `${(f.loadMsSum / f.loads).toFixed(1)} ms` : "-",
    String(f.evictions),
    f.sharedUp === undefined ? "none" : f.sharedUp === 1 ? "up" : "DOWN",
  ]);
}

/**
 * The cache rows of the process answering `GET <path>` at `address` (a service's `/metrics`, the
 * gateway's admin `/stats/prometheus`); none when it does not answer.
 */
export async function fetchCacheRows(
  service: string,
  address: string,
  path = "/metrics",
): Promise<string[][]> {
  try {
    const res = await fetch(`http://${address}${path}`, { signal: AbortSignal.timeout(2_000) });
    if (!res.ok) return [];
    return cacheRows(service, cacheFigures(await res.text()));
  } catch {
    return [];
  }
}
