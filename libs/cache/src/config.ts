import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { createNatsKvTier } from "./nats-kv-tier.js";
import { createRedisTier } from "./redis-tier.js";
import type { SharedTier } from "./shared-tier.js";

const ms = (d: number) => z.coerce.number().int().nonnegative().default(d);

/**
 * A service's cache settings, as a zod shape to spread into its config schema:
 * `CACHE_SHARED` (`nats` by default, `redis` by default when `REDIS_URL` is set, or `none`),
 * `REDIS_URL`, TTLs, L1 bounds and the shared tier's per-call deadline.
 */
export function cacheEnvShape() {
  return {
    CACHE_SHARED: z.enum(["nats", "redis", "none"]).optional(),
    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//, "a redis:// or rediss:// URL")
      .optional(),
    /** How long a cached value is kept (each TTL is shortened by up to 10 % of jitter). */
    CACHE_TTL_MS: ms(60_000),
    /** How long "no such key" is kept. */
    CACHE_NEGATIVE_TTL_MS: ms(5_000),
    CACHE_MAX_ENTRIES: z.coerce.number().int().positive().default(10_000),
    CACHE_MAX_BYTES: z.coerce
      .number()
      .int()
      .positive()
      .default(32 * 1024 * 1024),
    /** Deadline of one call to the shared tier; past it the read goes to the source. */
    CACHE_SHARED_TIMEOUT_MS: z.coerce.number().int().positive().default(100),
  };
}

export interface CacheConfig {
  shared: { kind: "nats" } | { kind: "redis"; url: string } | { kind: "none" };
  ttlMs: number;
  negativeTtlMs: number;
  maxEntries: number;
  maxBytes: number;
  sharedTimeoutMs: number;
}

/** The config of {@link cacheEnvShape}'s variables; `CACHE_SHARED=redis` needs `REDIS_URL`. */
export function toCacheConfig(env: {
  CACHE_SHARED?: "nats" | "redis" | "none";
  REDIS_URL?: string;
  CACHE_TTL_MS: number;
  CACHE_NEGATIVE_TTL_MS: number;
  CACHE_MAX_ENTRIES: number;
  CACHE_MAX_BYTES: number;
  CACHE_SHARED_TIMEOUT_MS: number;
}): CacheConfig {
  const kind = env.CACHE_SHARED ?? (env.REDIS_URL ? "redis" : "nats");
  if (kind === "redis" && !env.REDIS_URL)
    throw new Error("invalid configuration: CACHE_SHARED=redis needs REDIS_URL");
  return {
    shared: kind === "redis" ? { kind, url: env.REDIS_URL as string } : { kind },
    ttlMs: env.CACHE_TTL_MS,
    negativeTtlMs: env.CACHE_NEGATIVE_TTL_MS,
    maxEntries: env.CACHE_MAX_ENTRIES,
    maxBytes: env.CACHE_MAX_BYTES,
    sharedTimeoutMs: env.CACHE_SHARED_TIMEOUT_MS,
  };
}

/**
 * The NATS KV bucket of a service's caches: `cache-<service>`, prefixed by the mesh's events
 * namespace (`t1a2b.` gives `t1a2b_cache-orders`). Each cache's keys start with its name.
 */
export function cacheBucket(namespace: string, service: string): string {
  const ns = namespace ? `${namespace.slice(0, -1).replace(/[^A-Za-z0-9_-]/g, "_")}_` : "";
  return `${ns}cache-${service}`;
}

/**
 * The shared tier `config` names: NATS KV on the service's connection, Redis at its URL, or none.
 * `redisPrefix` keeps meshes (and tests) sharing one Redis apart.
 */
export async function openSharedTier(
  config: CacheConfig,
  where: { nc: NatsConnection; namespace: string; service: string },
): Promise<SharedTier | undefined> {
  switch (config.shared.kind) {
    case "none":
      return undefined;
    case "redis":
      return createRedisTier({
        url: config.shared.url,
        prefix: `${where.namespace}meshwork:cache:${where.service}:`,
      });
    case "nats":
      return createNatsKvTier({
        nc: where.nc,
        bucket: cacheBucket(where.namespace, where.service),
        maxTtlMs: Math.max(config.ttlMs, config.negativeTtlMs, 1_000),
      });
  }
}
