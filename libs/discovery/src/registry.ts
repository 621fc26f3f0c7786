import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { RecordSigner, RecordVerifier } from "./signing.js";

/** What an instance says of itself in the registry. */
export interface InstanceRecord {
  service: string;
  instanceId: string;
  /** `host:port` where it serves. */
  address: string;
  protocols: string[];
  version: string;
  /** ms since the epoch. */
  startedAt: number;
  /** When the record was last written (the heartbeat), ms since the epoch. */
  heartbeatAt: number;
}

export interface RegistryOptions {
  nc: NatsConnection;
  /** The KV bucket (default `meshwork_registry`; tests use their own). */
  bucket?: string;
  /**
   * A record older than this is gone: the bucket keeps values this long, and watchers drop an
   * instance whose last heartbeat is older (the server removes expired values without telling
   * watchers, on the nats-server 2.9 line). Instances heartbeat three times per TTL.
   */
  ttlMs?: number;
  /**
   * Copies of the bucket on a NATS cluster, when this process is the one to create it (the
   * same STREAM_REPLICAS as the streams: 3 in production). Default 1.
   */
  replicas?: number;
  /** Registering: signs each record as its service (`signature` beside the fields). */
  sign?: RecordSigner;
  /** Watching: a record it refuses (unsigned, or not by its service) is ignored as if absent. */
  verify?: RecordVerifier;
}

export const DEFAULT_BUCKET = "meshwork_registry";
export const DEFAULT_TTL_MS = 10_000;

async function openBucket(options: RegistryOptions): Promise<{ kv: KV; ttlMs: number }> {
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  const kv = await new Kvm(options.nc).create(options.bucket ?? DEFAULT_BUCKET, {
    history: 1,
    ttl: ttlMs,
    replicas: options.replicas ?? 1,
  });
  return { kv, ttlMs };
}

/** A key per instance: `<service>.<instanceId>` (KV keys allow letters, digits, `-`, `_`, `.`). */
function keyOf(service: string, instanceId: string): string {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "_");
  return `${clean(service)}.${clean(instanceId)}`;
}

export interface Registration {
  readonly record: InstanceRecord;
  /** Deregisters at once (graceful shutdown) and stops the heartbeat. */
  stop(): Promise<void>;
}

/**
 * Registers one instance and keeps its record fresh (a heartbeat every third of the TTL). An
 * instance that stops heartbeating (killed) disappears from watchers within the TTL; one that
 * stops gracefully deregisters at once.
 */
export async function registerInstance(
  options: RegistryOptions & Omit<InstanceRecord, "heartbeatAt" | "startedAt"> & { startedAt?: number },
): Promise<Registration> {
  let { kv, ttlMs } = await openBucket(options);
  let reopen = false;
  const record: InstanceRecord = {
    service: options.service,
    instanceId: options.instanceId,
    address: options.address,
    protocols: options.protocols,
    version: options.version,
    startedAt: options.startedAt ?? Date.now(),
    heartbeatAt: Date.now(),
  };
  const key = keyOf(record.service, record.instanceId);
  const beat = async () => {
    // After a failed beat the bucket is opened again: a NATS that came back without its store
    // has no bucket until someone creates it.
    if (reopen) ({ kv, ttlMs } = await openBucket(options));
    reopen = false;
    record.heartbeatAt = Date.now();
    try {
      const signature = options.sign?.(key, record);
      await kv.put(key, JSON.stringify(signature ? { ...record, signature } : record));
    } catch (err) {
      reopen = true;
      throw err;
    }
  };
  await beat();
  let stopped = false;
  /** The heartbeat being written, so a stop can let it land before deleting the key. */
  let writing: Promise<void> = Promise.resolve();
  const timer = setInterval(
    () => {
      if (!stopped) writing = beat().catch(() => {}); // NATS away: the next beat tries again
    },
    Math.max(100, Math.floor(ttlMs / 3)),
  );
  timer.unref();
  return {
    record,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await writing; // a put still in flight must not land after the delete
      await kv.delete(key).catch(() => {});
    },
  };
}

export interface RegistryWatcher {
  /** Live instances of a service (fresh heartbeat), in registration order. */
  instances(service: string): InstanceRecord[];
  /** Every live instance. */
  all(): InstanceRecord[];
  /** Resolves once the current contents of the bucket have been read. */
  readonly ready: Promise<void>;
  /**
   * Whether the registry is reachable now. While it is not, the watcher keeps the instances it
   * knew (as fresh as they were when it went away): a registry outage must not empty every
   * caller's endpoint sets, since no call needs the registry.
   */
  readonly up: boolean;
  /**
   * Called after every put or delete seen, with the instance's service. (Expiry by TTL is not an
   * event: readers that care re-read `instances` on a timer too.) Returns an unsubscribe.
   */
  onChange(listener: (service: string) => void): () => void;
  /** Called when the registry becomes unreachable (`false`) and once it is resynced (`true`). */
  onStatus(listener: (up: boolean) => void): () => void;
  stop(): Promise<void>;
}

/** One known instance; `graceUntil` keeps one not seen in a resync until it could have re-heartbeated. */
interface Known {
  record: InstanceRecord;
  graceUntil?: number;
}

/**
 * The watcher's link to the registry: `up` (following the bucket), `down` (NATS disconnected:
 * what was known is frozen) or `resyncing` (reconnected, replaying the bucket; still frozen).
 */
type LinkState = { s: "up" } | { s: "down"; since: number } | { s: "resyncing"; since: number };

class Watcher implements RegistryWatcher {
  readonly ready: Promise<void>;
  #markReady: () => void = () => {};
  #link: LinkState = { s: "up" };
  readonly #live = new Map<string, Known>();
  readonly #listeners = new Set<(service: string) => void>();
  readonly #statusListeners = new Set<(up: boolean) => void>();
  #iter: { stop(): void } | undefined;
  #loop: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Bumped per (re)opened watch, so a stale loop's entries are ignored. */
  #generation = 0;

  constructor(
    private readonly options: RegistryOptions,
    private readonly ttlMs: number,
  ) {
    this.ready = new Promise<void>((resolve) => {
      this.#markReady = resolve;
    });
  }

  get up(): boolean {
    return this.#link.s === "up";
  }

  /** Opens a watch that replays the bucket, then follows it; `onReplayed` runs once it is read. */
  async open(onReplayed: (seen: Set<string>) => void): Promise<void> {
    const generation = ++this.#generation;
    const { kv } = await openBucket(this.options);
    const seen = new Set<string>();
    let replayed = false;
    const replayDone = () => {
      if (replayed || generation !== this.#generation) return;
      replayed = true;
      onReplayed(seen);
    };
    const iter = await kv.watch();
    this.#iter = iter;
    // The watch first replays the current values (the last one has delta 0), then follows updates.
    if ((await kv.status()).values === 0) replayDone();
    this.#loop = (async () => {
      for await (const e of iter) {
        if (generation !== this.#generation) return;
        seen.add(e.key);
        this.#apply(e.key, e.operation === "PUT" ? e : undefined);
        if (e.isUpdate || e.delta === 0) replayDone();
      }
    })().catch(() => {});
  }

  #apply(key: string, put: { json<T>(): T } | undefined): void {
    const before = this.#live.get(key)?.record;
    let after: InstanceRecord | undefined;
    if (put) {
      try {
        after = put.json<InstanceRecord>();
      } catch {
        after = undefined; // not a record of ours
      }
      if (after && this.options.verify && !this.options.verify(key, after)) after = undefined;
    }
    if (after) this.#live.set(key, { record: after });
    else this.#live.delete(key);
    const service = after?.service ?? before?.service;
    // A heartbeat of a known instance changes nothing a listener cares about.
    const news = !before || !after || before.address !== after.address;
    if (service && news) this.#emit(service);
  }

  #emit(service: string): void {
    for (const l of this.#listeners) l(service);
  }

  #setLink(link: LinkState): void {
    const wasUp = this.up;
    this.#link = link;
    if (wasUp !== this.up) for (const l of this.#statusListeners) l(this.up);
  }

  /** NATS went away: freeze what is known. */
  lost(): void {
    if (this.#stopped || this.#link.s !== "up") return;
    this.#setLink({ s: "down", since: Date.now() });
  }

  /** NATS is back: replay the bucket afresh, then follow it again. */
  async resync(): Promise<void> {
    if (this.#stopped || this.#link.s === "up") return;
    const since = this.#link.since;
    this.#link = { s: "resyncing", since };
    this.#iter?.stop();
    await this.#loop;
    try {
      await this.open((seen) => {
        // Not in the bucket now: expired while nobody could heartbeat, or deleted. Kept until a
        // live instance's heartbeat (every third of the TTL) had time to land; gone after that.
        const graceUntil = Date.now() + this.ttlMs;
        for (const [key, k] of this.#live) if (!seen.has(key)) k.graceUntil = graceUntil;
        this.#setLink({ s: "up" });
      });
    } catch {
      // The registry answers nothing yet (JetStream still starting): the next reconnect, or the
      // retry below, tries again.
      this.#link = { s: "down", since };
      setTimeout(() => void this.resync(), 500).unref();
    }
  }

  markReady(): void {
    this.#markReady();
  }

  #fresh(k: Known, now: number): boolean {
    const at = this.#link.s === "up" ? now : this.#link.since;
    if (at - k.record.heartbeatAt <= this.ttlMs) return true;
    return k.graceUntil !== undefined && now <= k.graceUntil;
  }

  instances(service: string): InstanceRecord[] {
    return this.all().filter((r) => r.service === service);
  }

  all(): InstanceRecord[] {
    const now = Date.now();
    return [...this.#live.values()].filter((k) => this.#fresh(k, now)).map((k) => k.record);
  }

  onChange(listener: (service: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onStatus(listener: (up: boolean) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#generation++;
    this.#iter?.stop();
    await this.#loop;
  }
}

/**
 * Watches the registry and keeps the live set: puts add or refresh an instance, deletes remove
 * it at once, and an instance whose heartbeat is older than the TTL is dropped when read.
 *
 * While NATS is unreachable the set is frozen as it was (nothing expires for want of heartbeats
 * nobody can write); once NATS is back the bucket is read afresh: instances deleted meanwhile go,
 * and those missing from it stay one more TTL, time for a live instance to heartbeat again.
 */
export async function watchRegistry(options: RegistryOptions): Promise<RegistryWatcher> {
  const watcher = new Watcher(options, options.ttlMs ?? DEFAULT_TTL_MS);
  void (async () => {
    for await (const s of options.nc.status()) {
      if (s.type === "disconnect") watcher.lost();
      else if (s.type === "reconnect") void watcher.resync();
    }
  })().catch(() => {});
  await watcher.open(() => watcher.markReady());
  return watcher;
}

/** Removes a registry bucket and every record in it (tests, and tearing a mesh down); absent is fine. */
export async function removeRegistry(nc: NatsConnection, bucket: string): Promise<void> {
  await new Kvm(nc)
    .open(bucket)
    .then((kv) => kv.destroy())
    .catch(() => {});
}
