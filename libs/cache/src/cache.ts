import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type Attributes, type Meter, metrics } from "@opentelemetry/api";
import { LRUCache } from "lru-cache";
import { decodeEntry, type Entry, encodeEntry, HEADER_BYTES } from "./entry.js";
import { SharedHealth, UNAVAILABLE } from "./shared-health.js";
import type { SharedTier } from "./shared-tier.js";

type Log = { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };

export interface CacheOptions<Desc extends DescMessage> {
  /** Names the cache in metrics and logs, and prefixes its keys in the shared tier. */
  name: string;
  /** The contract message the cache holds; values travel to the shared tier as its binary. */
  schema: Desc;
  /** The source's version of a value (a row version that grows with every change). */
  version(value: MessageShape<Desc>): number;
  /** How long a value is kept, ms (before jitter). */
  ttlMs: number;
  /** How long "the source has no such key" is kept, ms. Default min(ttlMs, 5 s); 0: never. */
  negativeTtlMs?: number;
  /**
   * Each TTL is shortened by a random fraction up to this (0 to 0.5, default 0.1), so entries
   * filled together do not all expire, and reload, together.
   */
  jitter?: number;
  /** The in-process tier's bounds. Defaults: 10,000 entries, 32 MiB. */
  local?: { maxEntries?: number; maxBytes?: number };
  /** The shared tier; absent: the in-process tier only. */
  shared?: SharedTier;
  /** Deadline of one shared-tier call, ms. Default 100. */
  sharedTimeoutMs?: number;
  /** While the shared tier is out, how often one call probes it, ms. Default 1,000. */
  sharedProbeMs?: number;
  meter?: Meter;
  logger?: Log;
}

/** Counts kept by the cache itself (the same as its metrics), for status pages and tests. */
export interface CacheStats {
  local: { hits: number; misses: number; evictions: number; size: number; bytes: number };
  shared: {
    hits: number;
    misses: number;
    errors: number;
    /** Writes the shared tier refused because it held a newer entry. */
    refused: number;
    up: boolean;
    adapter: string | undefined;
  };
  loads: { count: number; failures: number; totalMs: number };
  invalidations: number;
  /** Loads whose result was older than an invalidation seen meanwhile: returned, not stored. */
  staleRefused: number;
}

/**
 * A read-through cache of one kind of value: an in-process LRU (L1) over an optional shared tier
 * (L2) over the source.
 */
export interface Cache<T> {
  /**
   * The value of `key`: from L1, else L2, else `load()` (which resolves undefined when the source
   * has no such key: remembered for the negative TTL). Concurrent misses of a key in this process
   * make one load; they all get its result or its error (errors are never cached). A value is
   * shared by every caller: treat it as read-only.
   */
  get(key: string, load: () => Promise<T | undefined>): Promise<T | undefined>;
  /**
   * The value of `key` from L1 when it holds one at `minVersion` or newer (a listing that read
   * the current versions from the source asks this), else undefined. Counted as an L1 hit or miss.
   */
  getLocal(key: string, minVersion: number): T | undefined;
  /**
   * Stores a value just read from the source (a listing's rows) in L1 and L2, unless an
   * invalidation already announced a newer version.
   */
  put(key: string, value: T): void;
  /**
   * The source changed `key`, now at `version`: drops this process's entry (unless it is already
   * at that version or newer) and leaves a tombstone in L2 that refuses anything older. From now
   * on a load that returns an older version (it started before the change) is not stored.
   */
  invalidate(key: string, version: number): Promise<void>;
  /** Drops every L1 entry (not L2): after a gap in the invalidation feed, say. */
  clearLocal(): void;
  stats(): CacheStats;
  /** Closes the shared tier. */
  close(): Promise<void>;
}

interface Slot<T> {
  kind: "value" | "missing";
  version: number;
  value: T | undefined;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Creates a {@link Cache} of the contract message `schema`. */
export function createCache<Desc extends DescMessage>(
  options: CacheOptions<Desc>,
): Cache<MessageShape<Desc>> {
  type T = MessageShape<Desc>;
  if (!NAME.test(options.name)) throw new Error(`cache name ${JSON.stringify(options.name)}: use [a-z0-9_-]`);
  const jitter = Math.min(0.5, Math.max(0, options.jitter ?? 0.1));
  const negativeTtlMs = options.negativeTtlMs ?? Math.min(options.ttlMs, 5_000);
  const meter = options.meter ?? metrics.getMeter("@meshwork/cache");
  const logger: Log = options.logger ?? { warn() {}, info() {} };
  const cache = options.name;
  const shared = options.shared;
  const stats: CacheStats = {
    local: { hits: 0, misses: 0, evictions: 0, size: 0, bytes: 0 },
    shared: { hits: 0, misses: 0, errors: 0, refused: 0, up: true, adapter: shared?.adapter },
    loads: { count: 0, failures: 0, totalMs: 0 },
    invalidations: 0,
    staleRefused: 0,
  };

  const requests = meter.createCounter("cache.requests", {
    description: "Cache look-ups, by cache, tier (l1, l2) and result (hit, miss)",
  });
  const loadsCounter = meter.createCounter("cache.loads", {
    description: "Loads from the source after a miss in every tier, by cache and result",
  });
  const loadTime = meter.createHistogram("cache.load.duration", {
    description: "Time of a load from the source",
    unit: "ms",
  });
  const evictions = meter.createCounter("cache.evictions", {
    description: "L1 entries dropped for room (evict) or age (expire)",
  });
  const invalidations = meter.createCounter("cache.invalidations", {
    description: "Invalidations applied (an event said the source changed a key)",
  });
  const staleRefused = meter.createCounter("cache.stale_refused", {
    description: "Loaded values older than an invalidation already seen: returned, not stored",
  });
  const outages = meter.createCounter("cache.shared.outages", {
    description: "Times the shared tier became unavailable (errors or deadline)",
  });
  const a = (extra: Attributes): Attributes => ({ cache, ...extra });
  const l1Hit = a({ tier: "l1", result: "hit" });
  const l1Miss = a({ tier: "l1", result: "miss" });
  const l2Hit = a({ tier: "l2", result: "hit" });
  const l2Miss = a({ tier: "l2", result: "miss" });
  meter
    .createObservableGauge("cache.l1.entries", { description: "Entries in the in-process tier" })
    .addCallback((r) => r.observe(local.size, { cache }));
  meter
    .createObservableGauge("cache.l1.bytes", { description: "Bytes held by the in-process tier", unit: "By" })
    .addCallback((r) => r.observe(local.calculatedSize, { cache }));
  if (shared) {
    meter
      .createObservableGauge("cache.shared.up", {
        description: "1 while the shared tier answers, 0 during an outage",
      })
      .addCallback((r) => r.observe(health?.up === false ? 0 : 1, { cache, adapter: shared.adapter }));
  }

  const health = shared
    ? new SharedHealth({
        cache,
        adapter: shared.adapter,
        timeoutMs: options.sharedTimeoutMs ?? 100,
        probeEveryMs: options.sharedProbeMs ?? 1_000,
        logger,
        outages,
      })
    : undefined;

  const local = new LRUCache<string, Slot<T>>({
    max: options.local?.maxEntries ?? 10_000,
    maxSize: options.local?.maxBytes ?? 32 * 1024 * 1024,
    // Checked on read, so an expired entry is a miss at once (no timer per entry).
    ttlAutopurge: false,
    allowStale: false,
    dispose: (_slot, _key, reason) => {
      if (reason === "evict" || reason === "expire") {
        stats.local.evictions++;
        evictions.add(1, a({ tier: "l1", reason }));
      }
    },
  });
  // The newest version an invalidation announced per key: loads older than it are not stored.
  const floors = new LRUCache<string, number>({ max: 100_000, ttl: 10 * 60_000 });
  const inflight = new Map<string, Promise<Slot<T>>>();

  const jittered = (ttl: number) => Math.max(1, Math.round(ttl * (1 - Math.random() * jitter)));
  const sharedKey = (key: string) => `${cache}.${key}`;
  const floorOf = (key: string) => floors.get(key) ?? 0;

  const keepLocal = (key: string, slot: Slot<T>, bytes: number, ttlMs: number) => {
    if (ttlMs <= 0) return;
    local.set(key, slot, { ttl: ttlMs, size: Math.max(1, bytes + key.length * 2) });
  };

  const fromShared = async (key: string): Promise<Slot<T> | undefined> => {
    if (!shared || !health) return undefined;
    const got = await health.call("get", () => shared.get(sharedKey(key)));
    if (got === UNAVAILABLE) {
      stats.shared.errors++;
      return undefined;
    }
    const now = Date.now();
    const e = got ? decodeEntry(got) : undefined;
    if (!e || e.kind === "tombstone" || e.expiresAt <= now || e.version < floorOf(key)) {
      stats.shared.misses++;
      requests.add(1, l2Miss);
      return undefined;
    }
    stats.shared.hits++;
    requests.add(1, l2Hit);
    const slot: Slot<T> =
      e.kind === "value"
        ? { kind: "value", version: e.version, value: fromBinary(options.schema, e.payload) }
        : { kind: "missing", version: e.version, value: undefined };
    keepLocal(key, slot, e.payload.byteLength + HEADER_BYTES, e.expiresAt - now);
    return slot;
  };

  const offerShared = (key: string, entry: Entry, ttlMs: number): Promise<unknown> => {
    if (!shared || !health) return Promise.resolve();
    const bytes = encodeEntry(entry);
    return health
      .call("offer", () => shared.offer(sharedKey(key), bytes, ttlMs))
      .then((r) => {
        if (r === UNAVAILABLE) stats.shared.errors++;
        else if (!r) stats.shared.refused++;
      });
  };

  const store = (key: string, slot: Slot<T>, value: T | undefined): void => {
    if (slot.version < floorOf(key)) {
      stats.staleRefused++;
      staleRefused.add(1, { cache });
      return;
    }
    if (slot.kind === "missing" && negativeTtlMs <= 0) return;
    const ttl = jittered(slot.kind === "value" ? options.ttlMs : negativeTtlMs);
    const payload =
      slot.kind === "value" && value !== undefined ? toBinary(options.schema, value) : new Uint8Array();
    keepLocal(key, slot, payload.byteLength + HEADER_BYTES, ttl);
    // Not awaited: the caller has its value; the shared tier is filled behind it.
    void offerShared(
      key,
      { kind: slot.kind, version: slot.version, expiresAt: Date.now() + ttl, payload },
      ttl,
    );
  };

  const loadFromSource = async (key: string, load: () => Promise<T | undefined>): Promise<Slot<T>> => {
    const started = performance.now();
    let value: T | undefined;
    try {
      value = await load();
    } catch (err) {
      stats.loads.failures++;
      loadsCounter.add(1, a({ result: "error" }));
      throw err;
    } finally {
      const ms = performance.now() - started;
      stats.loads.count++;
      stats.loads.totalMs += ms;
      loadTime.record(ms, { cache });
    }
    loadsCounter.add(1, a({ result: value === undefined ? "missing" : "found" }));
    const slot: Slot<T> =
      value === undefined
        ? { kind: "missing", version: 0, value: undefined }
        : { kind: "value", version: options.version(value), value };
    store(key, slot, value);
    return slot;
  };

  const fill = async (key: string, load: () => Promise<T | undefined>): Promise<Slot<T>> =>
    (await fromShared(key)) ?? loadFromSource(key, load);

  return {
    async get(key, load) {
      const slot = local.get(key);
      if (slot) {
        stats.local.hits++;
        requests.add(1, l1Hit);
        return slot.value;
      }
      stats.local.misses++;
      requests.add(1, l1Miss);
      let flight = inflight.get(key);
      if (!flight) {
        flight = fill(key, load).finally(() => inflight.delete(key));
        inflight.set(key, flight);
      }
      return (await flight).value;
    },

    getLocal(key, minVersion) {
      const slot = local.get(key);
      if (slot?.kind === "value" && slot.version >= minVersion) {
        stats.local.hits++;
        requests.add(1, l1Hit);
        return slot.value;
      }
      stats.local.misses++;
      requests.add(1, l1Miss);
      return undefined;
    },

    put(key, value) {
      const version = options.version(value);
      const cur = local.peek(key);
      if (cur && cur.version > version) return;
      store(key, { kind: "value", version, value }, value);
    },

    async invalidate(key, version) {
      stats.invalidations++;
      invalidations.add(1, { cache });
      if (version > floorOf(key)) floors.set(key, version);
      const cur = local.peek(key);
      if (cur && (cur.version < version || cur.kind === "missing")) local.delete(key);
      const ttl = Math.max(options.ttlMs, negativeTtlMs);
      await offerShared(
        key,
        { kind: "tombstone", version, expiresAt: Date.now() + ttl, payload: new Uint8Array() },
        ttl,
      );
    },

    clearLocal() {
      local.clear();
    },

    stats() {
      stats.local.size = local.size;
      stats.local.bytes = local.calculatedSize;
      stats.shared.up = health?.up ?? true;
      return structuredClone(stats);
    },

    async close() {
      await shared?.close();
    },
  };
}
