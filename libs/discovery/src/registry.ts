import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

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
}

export const DEFAULT_BUCKET = "meshwork_registry";
export const DEFAULT_TTL_MS = 10_000;

async function openBucket(options: RegistryOptions): Promise<{ kv: KV; ttlMs: number }> {
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  const kv = await new Kvm(options.nc).create(options.bucket ?? DEFAULT_BUCKET, { history: 1, ttl: ttlMs });
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
  const { kv, ttlMs } = await openBucket(options);
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
    record.heartbeatAt = Date.now();
    await kv.put(key, JSON.stringify(record));
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
   * Called after every put or delete seen, with the instance's service. (Expiry by TTL is not an
   * event: readers that care re-read `instances` on a timer too.) Returns an unsubscribe.
   */
  onChange(listener: (service: string) => void): () => void;
  stop(): Promise<void>;
}

/**
 * Watches the registry and keeps the live set: puts add or refresh an instance, deletes remove
 * it at once, and an instance whose heartbeat is older than the TTL is dropped when read.
 */
export async function watchRegistry(options: RegistryOptions): Promise<RegistryWatcher> {
  const { kv, ttlMs } = await openBucket(options);
  const live = new Map<string, InstanceRecord>();
  const listeners = new Set<(service: string) => void>();
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  const iter = await kv.watch();
  // The watch first replays the current values (the last one has delta 0), then follows updates.
  if ((await kv.status()).values === 0) markReady();
  const loop = (async () => {
    for await (const e of iter) {
      if (e.isUpdate || e.delta === 0) markReady();
      const before = live.get(e.key);
      if (e.operation === "PUT") {
        try {
          live.set(e.key, e.json<InstanceRecord>());
        } catch {
          live.delete(e.key); // not a record of ours
        }
      } else {
        live.delete(e.key);
      }
      const service = live.get(e.key)?.service ?? before?.service;
      // A heartbeat of a known instance changes nothing a listener cares about.
      const news = !before || !live.has(e.key) || before.address !== live.get(e.key)?.address;
      if (service && news) for (const l of listeners) l(service);
    }
  })();
  const fresh = (r: InstanceRecord, now: number) => now - r.heartbeatAt <= ttlMs;
  return {
    ready,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    instances(service) {
      const now = Date.now();
      return [...live.values()].filter((r) => r.service === service && fresh(r, now));
    },
    all() {
      const now = Date.now();
      return [...live.values()].filter((r) => fresh(r, now));
    },
    async stop() {
      iter.stop();
      await loop.catch(() => {});
    },
  };
}

/** Removes a registry bucket and every record in it (tests, and tearing a mesh down); absent is fine. */
export async function removeRegistry(nc: NatsConnection, bucket: string): Promise<void> {
  await new Kvm(nc)
    .open(bucket)
    .then((kv) => kv.destroy())
    .catch(() => {});
}
