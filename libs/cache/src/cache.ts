import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type Meter, metrics } from "@opentelemetry/api";
import { LRUCache } from "lru-cache";
import { type CacheMetrics, createCacheMetrics } from "./cache-metrics.js";
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
  if (!NAME.test(options.name)) throw new Error(`cache name ${JSON.stringify(options.name)}: use [a-z0-9_-]`);
  return new TieredCache(options);
}

/**
 * The cache of {@link createCache}: L1 (`local`), L2 through `health`, the versions invalidations
 * announced (`floors`), and the loads in flight (one per key).
 */
class TieredCache<Desc extends DescMessage> implements Cache<MessageShape<Desc>> {
  private readonly jitter: number;
  private readonly negativeTtlMs: number;
  private readonly cache: string;
  private readonly shared: SharedTier | undefined;
  private readonly counts: CacheStats;
  private readonly m: CacheMetrics;
  private readonly health: SharedHealth | undefined;
  private readonly local: LRUCache<string, Slot<MessageShape<Desc>>>;
  // The newest version an invalidation announced per key: loads older than it are not stored.
  private readonly floors = new LRUCache<string, number>({ max: 100_000, ttl: 10 * 60_000 });
  private readonly inflight = new Map<string, Promise<Slot<MessageShape<Desc>>>>();

  constructor(private readonly options: CacheOptions<Desc>) {
    this.jitter = Math.min(0.5, Math.max(0, options.jitter ?? 0.1));
    this.negativeTtlMs = options.negativeTtlMs ?? Math.min(options.ttlMs, 5_000);
    const meter = options.meter ?? metrics.getMeter("@meshwork/cache");
    const logger: Log = options.logger ?? { warn() {}, info() {} };
    const cache = options.name;
    const shared = options.shared;
    this.cache = cache;
    this.shared = shared;
    this.counts = {
      local: { hits: 0, misses: 0, evictions: 0, size: 0, bytes: 0 },
      shared: { hits: 0, misses: 0, errors: 0, refused: 0, up: true, adapter: shared?.adapter },
      loads: { count: 0, failures: 0, totalMs: 0 },
      invalidations: 0,
      staleRefused: 0,
    };
    this.m = createCacheMetrics(meter, cache, shared?.adapter, {
      l1Entries: () => this.local.size,
      l1Bytes: () => this.local.calculatedSize,
      ...(shared ? { sharedUp: () => this.health?.up !== false } : {}),
    });
    this.health = shared
      ? new SharedHealth({
          cache,
          adapter: shared.adapter,
          timeoutMs: options.sharedTimeoutMs ?? 100,
          probeEveryMs: options.sharedProbeMs ?? 1_000,
          logger,
          outages: this.m.outages,
        })
      : undefined;
    this.local = new LRUCache<string, Slot<MessageShape<Desc>>>({
      max: options.local?.maxEntries ?? 10_000,
      maxSize: options.local?.maxBytes ?? 32 * 1024 * 1024,
      // Checked on read, so an expired entry is a miss at once (no timer per entry).
      ttlAutopurge: false,
      allowStale: false,
      dispose: (_slot, _key, reason) => {
        if (reason === "evict" || reason === "expire") {
          this.counts.local.evictions++;
          this.m.evictions.add(1, this.m.attributes({ tier: "l1", reason }));
        }
      },
    });
  }

  async get(key: string, load: () => Promise<MessageShape<Desc> | undefined>) {
    const slot = this.local.get(key);
    if (slot) {
      this.counts.local.hits++;
      this.m.requests.add(1, this.m.l1Hit);
      return slot.value;
    }
    this.counts.local.misses++;
    this.m.requests.add(1, this.m.l1Miss);
    let flight = this.inflight.get(key);
    if (!flight) {
      flight = this.fill(key, load).finally(() => this.inflight.delete(key));
      this.inflight.set(key, flight);
    }
    return (await flight).value;
  }

  getLocal(key: string, minVersion: number) {
    const slot = this.local.get(key);
    if (slot?.kind === "value" && slot.version >= minVersion) {
      this.counts.local.hits++;
      this.m.requests.add(1, this.m.l1Hit);
      return slot.value;
    }
    this.counts.local.misses++;
    this.m.requests.add(1, this.m.l1Miss);
    return undefined;
  }

  put(key: string, value: MessageShape<Desc>) {
    const version = this.options.version(value);
    const cur = this.local.peek(key);
    if (cur && cur.version > version) return;
    this.store(key, { kind: "value", version, value }, value);
  }

  async invalidate(key: string, version: number) {
    this.counts.invalidations++;
    this.m.invalidations.add(1, { cache: this.cache });
    if (version > this.floorOf(key)) this.floors.set(key, version);
    const cur = this.local.peek(key);
    if (cur && (cur.version < version || cur.kind === "missing")) this.local.delete(key);
    const ttl = Math.max(this.options.ttlMs, this.negativeTtlMs);
    await this.offerShared(
      key,
      { kind: "tombstone", version, expiresAt: Date.now() + ttl, payload: new Uint8Array() },
      ttl,
    );
  }

  clearLocal() {
    this.local.clear();
  }

  stats() {
    this.counts.local.size = this.local.size;
    this.counts.local.bytes = this.local.calculatedSize;
    this.counts.shared.up = this.health?.up ?? true;
    return structuredClone(this.counts);
  }

  async close() {
    await this.shared?.close();
  }

  private jittered(ttl: number) {
    return Math.max(1, Math.round(ttl * (1 - Math.random() * this.jitter)));
  }

  private sharedKey(key: string) {
    return `${this.cache}.${key}`;
  }

  private floorOf(key: string) {
    return this.floors.get(key) ?? 0;
  }

  private keepLocal(key: string, slot: Slot<MessageShape<Desc>>, bytes: number, ttlMs: number) {
    if (ttlMs <= 0) return;
    this.local.set(key, slot, { ttl: ttlMs, size: Math.max(1, bytes + key.length * 2) });
  }

  private async fromShared(key: string): Promise<Slot<MessageShape<Desc>> | undefined> {
    const { shared, health } = this;
    if (!shared || !health) return undefined;
    const got = await health.call("get", () => shared.get(this.sharedKey(key)));
    if (got === UNAVAILABLE) {
      this.counts.shared.errors++;
      return undefined;
    }
    const now = Date.now();
    const e = got ? decodeEntry(got) : undefined;
    if (!e || e.kind === "tombstone" || e.expiresAt <= now || e.version < this.floorOf(key)) {
      this.counts.shared.misses++;
      this.m.requests.add(1, this.m.l2Miss);
      return undefined;
    }
    this.counts.shared.hits++;
    this.m.requests.add(1, this.m.l2Hit);
    const slot: Slot<MessageShape<Desc>> =
      e.kind === "value"
        ? { kind: "value", version: e.version, value: fromBinary(this.options.schema, e.payload) }
        : { kind: "missing", version: e.version, value: undefined };
    this.keepLocal(key, slot, e.payload.byteLength + HEADER_BYTES, e.expiresAt - now);
    return slot;
  }

  private offerShared(key: string, entry: Entry, ttlMs: number): Promise<unknown> {
    const { shared, health } = this;
    if (!shared || !health) return Promise.resolve();
    const bytes = encodeEntry(entry);
    return health
      .call("offer", () => shared.offer(this.sharedKey(key), bytes, ttlMs))
      .then((r) => {
        if (r === UNAVAILABLE) this.counts.shared.errors++;
        else if (!r) this.counts.shared.refused++;
      });
  }

  private store(key: string, slot: Slot<MessageShape<Desc>>, value: MessageShape<Desc> | undefined): void {
    if (slot.version < this.floorOf(key)) {
      this.counts.staleRefused++;
      this.m.staleRefused.add(1, { cache: this.cache });
      return;
    }
    if (slot.kind === "missing" && this.negativeTtlMs <= 0) return;
    const ttl = this.jittered(slot.kind === "value" ? this.options.ttlMs : this.negativeTtlMs);
    const payload =
      slot.kind === "value" && value !== undefined ? toBinary(this.options.schema, value) : new Uint8Array();
    this.keepLocal(key, slot, payload.byteLength + HEADER_BYTES, ttl);
    // Not awaited: the caller has its value; the shared tier is filled behind it.
    void this.offerShared(
      key,
      { kind: slot.kind, version: slot.version, expiresAt: Date.now() + ttl, payload },
      ttl,
    );
  }

  private async loadFromSource(
    key: string,
    load: () => Promise<MessageShape<Desc> | undefined>,
  ): Promise<Slot<MessageShape<Desc>>> {
    const started = performance.now();
    let value: MessageShape<Desc> | undefined;
    try {
      value = await load();
    } catch (err) {
      this.counts.loads.failures++;
      this.m.loads.add(1, this.m.attributes({ result: "error" }));
      throw err;
    } finally {
      const ms = performance.now() - started;
      this.counts.loads.count++;
      this.counts.loads.totalMs += ms;
      this.m.loadTime.record(ms, { cache: this.cache });
    }
    this.m.loads.add(1, this.m.attributes({ result: value === undefined ? "missing" : "found" }));
    const slot: Slot<MessageShape<Desc>> =
      value === undefined
        ? { kind: "missing", version: 0, value: undefined }
        : { kind: "value", version: this.options.version(value), value };
    this.store(key, slot, value);
    return slot;
  }

  private async fill(key: string, load: () => Promise<MessageShape<Desc> | undefined>) {
    return (await this.fromShared(key)) ?? this.loadFromSource(key, load);
  }
}
