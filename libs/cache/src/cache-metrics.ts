import type { Attributes, Meter } from "@opentelemetry/api";

/** What the cache's observable gauges read when the meter asks. */
export interface CacheGaugeSources {
  l1Entries(): number;
  l1Bytes(): number;
  /** Absent without a shared tier (then there is no `cache.shared.up` gauge). */
  sharedUp?(): boolean;
}

/**
 * The instruments of one cache (`cache.*`), with the attribute sets used on every look-up made
 * once, so a hit allocates nothing for its metrics.
 */
export function createCacheMetrics(
  meter: Meter,
  cache: string,
  adapter: string | undefined,
  gauges: CacheGaugeSources,
) {
  const a = (extra: Attributes): Attributes => ({ cache, ...extra });
  meter
    .createObservableGauge("cache.l1.entries", { description: "Entries in the in-process tier" })
    .addCallback((r) => r.observe(gauges.l1Entries(), { cache }));
  meter
    .createObservableGauge("cache.l1.bytes", { description: "Bytes held by the in-process tier", unit: "By" })
    .addCallback((r) => r.observe(gauges.l1Bytes(), { cache }));
  const sharedUp = gauges.sharedUp;
  if (sharedUp) {
    meter
      .createObservableGauge("cache.shared.up", {
        description: "1 while the shared tier answers, 0 during an outage",
      })
      .addCallback((r) => r.observe(sharedUp() ? 1 : 0, { cache, adapter }));
  }
  return {
    attributes: a,
    l1Hit: a({ tier: "l1", result: "hit" }),
    l1Miss: a({ tier: "l1", result: "miss" }),
    l2Hit: a({ tier: "l2", result: "hit" }),
    l2Miss: a({ tier: "l2", result: "miss" }),
    requests: meter.createCounter("cache.requests", {
      description: "Cache look-ups, by cache, tier (l1, l2) and result (hit, miss)",
    }),
    loads: meter.createCounter("cache.loads", {
      description: "Loads from the source after a miss in every tier, by cache and result",
    }),
    loadTime: meter.createHistogram("cache.load.duration", {
      description: "Time of a load from the source",
      unit: "ms",
    }),
    evictions: meter.createCounter("cache.evictions", {
      description: "L1 entries dropped for room (evict) or age (expire)",
    }),
    invalidations: meter.createCounter("cache.invalidations", {
      description: "Invalidations applied (an event said the source changed a key)",
    }),
    staleRefused: meter.createCounter("cache.stale_refused", {
      description: "Loaded values older than an invalidation already seen: returned, not stored",
    }),
    outages: meter.createCounter("cache.shared.outages", {
      description: "Times the shared tier became unavailable (errors or deadline)",
    }),
  };
}

export type CacheMetrics = ReturnType<typeof createCacheMetrics>;
