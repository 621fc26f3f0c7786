import { Redis } from "ioredis";
import { decodeEntry } from "./entry.js";
import type { SharedTier } from "./shared-tier.js";

export interface RedisTierOptions {
  /** `redis://host:port/db` (`REDIS_URL`). */
  url: string;
  /** Prefix of every key, so several meshes or tests share one server. Default `meshwork:cache:`. */
  prefix?: string;
}

/**
 * The compare-and-set of `offer`, atomic in Redis: it reads the stored entry's header (format,
 * kind, version and expiry, big-endian, see `entry.ts`) and writes the new one with its TTL unless
 * the stored one is live and newer, or the same version and the new one is a tombstone.
 */
const OFFER = `
local cur = redis.call('GET', KEYS[1])
local nxt = ARGV[1]
local function num(s, from) local v = 0 for i = from, from + 7 do v = v * 256 + string.byte(s, i) end return v end
if cur and string.len(cur) >= 18 and string.byte(cur, 1) == 1 and num(cur, 11) > tonumber(ARGV[3]) then
  local cv, nv = num(cur, 3), num(nxt, 3)
  if nv < cv then return 0 end
  if nv == cv and string.byte(nxt, 2) == 2 then return 0 end
end
redis.call('SET', KEYS[1], nxt, 'PX', ARGV[2])
return 1
`;

type WithOffer = Redis & {
  cacheOffer(key: string, entry: Buffer, ttlMs: number, now: number): Promise<number>;
};

/**
 * The shared tier on Redis (ioredis). Commands are not queued while the connection is down (they
 * fail at once and the cache falls through to the source); the client reconnects by itself with
 * a capped backoff.
 */
export function createRedisTier(options: RedisTierOptions): SharedTier {
  const prefix = options.prefix ?? "meshwork:cache:";
  const client = new Redis(options.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
  }) as WithOffer;
  // Connection errors surface as failed commands, which the cache reports once per outage;
  // without a listener ioredis would print every reconnection attempt.
  client.on("error", () => {});
  client.defineCommand("cacheOffer", { numberOfKeys: 1, lua: OFFER });
  // Without the offline queue a command sent before the first connection fails: the first calls
  // wait for it (within the cache's deadline, so a Redis down at start-up is an outage like any).
  let connected = false;
  const firstConnection = new Promise<void>((resolve) =>
    client.once("ready", () => {
      connected = true;
      resolve();
    }),
  );
  const ready = () => (connected ? undefined : firstConnection);
  return {
    adapter: "redis",
    async get(key) {
      await ready();
      const v = await client.getBuffer(prefix + key);
      return v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : undefined;
    },
    async offer(key, entry, ttlMs) {
      if (!decodeEntry(entry)) throw new Error("offer: not an encoded entry");
      await ready();
      const buf = Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength);
      return (await client.cacheOffer(prefix + key, buf, Math.max(1, Math.ceil(ttlMs)), Date.now())) === 1;
    },
    async close() {
      client.disconnect();
    },
  };
}
