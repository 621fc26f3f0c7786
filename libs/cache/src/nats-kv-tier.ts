import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeEntry, supersedes } from "./entry.js";
import type { SharedTier } from "./shared-tier.js";

export interface NatsKvTierOptions {
  /** The service's connection (the tier does not close it). */
  nc: NatsConnection;
  /** The KV bucket: one per service (`cache-<service>`, with the mesh's namespace). */
  bucket: string;
  /**
   * The bucket's TTL (its stream's max age), ms: the longest any entry lives. NATS 2.9 has no
   * per-key TTL, so each entry also carries its own expiry, checked on read.
   */
  maxTtlMs: number;
  /** Bytes the bucket may hold; the oldest entries go first when full. Default 256 MiB. */
  maxBytes?: number;
}

const SAFE_KEY = /^[-_=A-Za-z0-9]+(\.[-_=A-Za-z0-9]+)*$/;

/** A key NATS KV accepts: itself when it is one, else `b64.` and its base64url. */
export function natsKvKey(key: string): string {
  return SAFE_KEY.test(key) && !key.startsWith("b64.")
    ? key
    : `b64.${Buffer.from(key, "utf8").toString("base64url")}`;
}

/**
 * The shared tier on a NATS KV bucket (history 1). `offer` is a compare-and-set on the key's
 * revision (`create` when absent, `update` at the revision read), retried when another writer
 * got in between, so an older entry never replaces a newer one.
 */
export async function createNatsKvTier(options: NatsKvTierOptions): Promise<SharedTier> {
  let kv: KV | undefined;
  // The bucket is opened (and created if missing) lazily, so a service starts while NATS KV is
  // unavailable and its cache starts working when it comes back.
  const bucket = async (): Promise<KV> => {
    kv ??= await new Kvm(options.nc).create(options.bucket, {
      history: 1,
      ttl: options.maxTtlMs,
      max_bytes: options.maxBytes ?? 256 * 1024 * 1024,
    });
    return kv;
  };
  return {
    adapter: "nats-kv",
    async get(key) {
      const e = await (await bucket()).get(natsKvKey(key));
      return e && e.operation === "PUT" && e.value.byteLength > 0 ? e.value : undefined;
    },
    async offer(key, entry, _ttlMs) {
      const next = decodeEntry(entry);
      if (!next) throw new Error("offer: not an encoded entry");
      const b = await bucket();
      const k = natsKvKey(key);
      for (let attempt = 0; ; attempt++) {
        const cur = await b.get(k);
        const live = cur && cur.operation === "PUT" ? cur : undefined;
        if (live && !supersedes(next, decodeEntry(live.value))) return false;
        try {
          if (cur) await b.update(k, entry, cur.revision);
          else await b.create(k, entry);
          return true;
        } catch (err) {
          // Another writer changed the key since it was read: read it again.
          if (attempt >= 4) throw err;
        }
      }
    },
    async close() {},
  };
}
