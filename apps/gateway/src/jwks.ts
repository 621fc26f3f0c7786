import { createHash } from "node:crypto";
import { fromJson, type JsonObject, toJson } from "@bufbuild/protobuf";
import { type Struct, StructSchema } from "@bufbuild/protobuf/wkt";
import {
  type Cache,
  cacheBucket,
  createCache,
  createNatsKvTier,
  createRedisTier,
  type SharedTier,
} from "@meshwork/cache";
import { connectNats } from "@meshwork/events";
import type { Meter } from "@opentelemetry/api";
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey, errors as joseErrors } from "jose";
import type { JwksSharedConfig } from "./config.js";
import type { KeySetKeys } from "./verified-tokens.js";

type Log = { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };

/** The users service's key set could not be had (fetch failed, timed out, or was not a JWKS). */
export class JwksUnavailableError extends Error {
  override readonly name = "JwksUnavailableError";
}

export interface JwksOptions {
  /** The users service's JWKS document. */
  url: string;
  /**
   * Least time between two refreshes on an unknown `kid`, counted from the current key set's
   * fetch (by any gateway sharing the tier) and from this process's last refresh attempt.
   */
  cooldownMs: number;
  /** How long a fetched key set is used, counted from its fetch at the source, in every tier. */
  maxAgeMs: number;
  /** Deadline of one fetch of the document, ms. Default 2,000. */
  timeoutMs?: number;
  /** The shared tier (L2) gateways hold the key set in; absent: each process fetches its own. */
  shared?: SharedTier;
  /** Deadline of one shared-tier call, ms. Default 100. */
  sharedTimeoutMs?: number;
  meter?: Meter;
  logger?: Log;
}

/** The key under which the key set of `url` is cached (the cache is named `jwks`). */
export function jwksCacheKey(url: string): string {
  return `set.${createHash("sha256").update(url).digest("hex").slice(0, 32)}`;
}

interface KeySet extends KeySetKeys {
  /** When it was fetched from the users service, ms since the epoch: also its cache version. */
  fetchedAt: number;
  getKey: JWTVerifyGetKey;
}

type Key = Awaited<ReturnType<JWTVerifyGetKey>>;

/** Each key's material (its JWK as JSON) by `kid`, for the verified-token cache. */
function keysOf(jwks: JSONWebKeySet): Map<string, string> {
  const keys = new Map<string, string>();
  for (const k of Array.isArray(jwks.keys) ? jwks.keys : []) {
    if (typeof k.kid === "string") keys.set(k.kid, JSON.stringify(k));
  }
  return keys;
}

const fetchedAtOf = (s: Struct): number => {
  const v = s.fields.fetchedAt?.kind;
  return v?.case === "numberValue" ? v.value : 0;
};

/** Fetches the users service's JWKS document; throws {@link JwksUnavailableError} when it is not one. */
async function fetchJwksDocument(url: string, timeoutMs: number): Promise<JSONWebKeySet> {
  let doc: unknown;
  try {
    const res = await fetch(url, {
      headers: { accept: "application/json" },
      redirect: "error",
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.status !== 200) throw new JwksUnavailableError(`JWKS answered HTTP ${res.status}`);
    doc = await res.json();
  } catch (err) {
    if (err instanceof JwksUnavailableError) throw err;
    throw new JwksUnavailableError(`JWKS fetch failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    createLocalJWKSet(doc as JSONWebKeySet);
  } catch {
    throw new JwksUnavailableError("JWKS document is not a JSON Web Key Set");
  }
  return doc as JSONWebKeySet;
}

/**
 * The users service's JWKS behind the multi-level cache: an in-process tier in each gateway over
 * the shared tier, so N gateways make one fetch per max age between them, not N. The document is
 * kept as a `google.protobuf.Struct` (`{ fetchedAt, jwks }`); its fetch time is its version.
 *
 * A token whose `kid` is not in the key set refreshes it (once the cooldown has passed): the
 * process drops its copy and tombstones the shared one at a newer version, then reads the shared
 * tier again (another gateway may have refreshed already) and else fetches. A key the users
 * service dropped (rotation) is gone from every tier at most `maxAgeMs` after its last fetch.
 * When the shared tier is down or slow, reads fall through to a direct fetch.
 */
export function createJwks(options: JwksOptions) {
  const key = jwksCacheKey(options.url);
  const timeoutMs = options.timeoutMs ?? 2_000;
  const cache: Cache<Struct> = createCache({
    name: "jwks",
    schema: StructSchema,
    version: fetchedAtOf,
    ttlMs: options.maxAgeMs,
    // A failed fetch is an error (not cached); "no such document" does not happen.
    negativeTtlMs: 0,
    local: { maxEntries: 16, maxBytes: 1024 * 1024 },
    shared: options.shared,
    sharedTimeoutMs: options.sharedTimeoutMs,
    meter: options.meter,
    logger: options.logger,
  });
  let newest = 0;
  let lastAttempt = 0;
  let memo: KeySet | undefined;
  let refreshing: Promise<KeySet> | undefined;

  const load = async (): Promise<Struct> => {
    const doc = await fetchJwksDocument(options.url, timeoutMs);
    // Versions only grow, even when two fetches fall in one millisecond.
    const fetchedAt = Math.max(Date.now(), newest + 1);
    newest = fetchedAt;
    return fromJson(StructSchema, { fetchedAt, jwks: doc as unknown as JsonObject });
  };

  const keySetOf = (s: Struct | undefined): KeySet => {
    if (!s) throw new JwksUnavailableError("JWKS document missing");
    const fetchedAt = fetchedAtOf(s);
    if (memo?.fetchedAt === fetchedAt) return memo;
    newest = Math.max(newest, fetchedAt);
    const jwks = (toJson(StructSchema, s) as unknown as { jwks: JSONWebKeySet }).jwks;
    memo = { fetchedAt, getKey: createLocalJWKSet(jwks), keys: keysOf(jwks) };
    return memo;
  };

  const current = async (): Promise<KeySet> => keySetOf(await cache.get(key, load));

  const refresh = (stale: KeySet): Promise<KeySet> => {
    refreshing ??= (async () => {
      lastAttempt = Date.now();
      // Drops this process's copy and refuses the shared one at `stale`'s version or older; a
      // newer one another gateway already fetched is read from the shared tier.
      await cache.invalidate(key, stale.fetchedAt + 1);
      return current();
    })().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  };

  /** The key for a token's header, and the key set it came from. */
  const resolve = async (
    ...[header, token]: Parameters<JWTVerifyGetKey>
  ): Promise<{ key: Key; set: KeySet }> => {
    const set = await current();
    try {
      return { key: await set.getKey(header, token), set };
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
      const now = Date.now();
      if (now - set.fetchedAt < options.cooldownMs || now - lastAttempt < options.cooldownMs) throw err;
      const fresh = await refresh(set);
      return { key: await fresh.getKey(header, token), set: fresh };
    }
  };

  return {
    getKey: (async (header, token) => (await resolve(header, token)).key) as JWTVerifyGetKey,
    resolve,
    /** The key set in use now (the latest one read), if any was read yet. */
    latest: (): KeySetKeys | undefined => memo,
    close: () => cache.close(),
  };
}

export type Jwks = ReturnType<typeof createJwks>;

/** A shared tier that can be asked to connect ahead of its first use. */
export interface JwksSharedTier extends SharedTier {
  /** Connects (opens the bucket) within `ms` if it can; never throws. */
  warm(ms: number): Promise<void>;
}

/** Waits for `p` at most `ms`, ignoring its result or error. */
async function within(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => {}), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/**
 * The JWKS cache's shared tier as `config` names it: NATS KV (bucket `cache-gateway`, with the
 * namespace) on a connection of its own, or Redis; undefined for `none`. It connects on first
 * use (or `warm`) and never holds up the gateway for long: until NATS answers, the cache's per-call
 * deadline sends reads to the users service directly. `close` closes the connection it opened.
 */
export function openJwksSharedTier(
  config: JwksSharedConfig | undefined,
  options: { maxAgeMs: number },
): JwksSharedTier | undefined {
  if (!config || config.kind === "none") return undefined;
  if (config.kind === "redis") {
    const tier = createRedisTier({ url: config.url, prefix: `${config.namespace}meshwork:cache:gateway:` });
    return {
      adapter: tier.adapter,
      get: tier.get,
      offer: tier.offer,
      close: tier.close,
      warm: (ms) => within(ms, tier.get("warm-up")),
    };
  }
  type Opened = { tier: SharedTier; close(): Promise<void> };
  let opening: Promise<Opened> | undefined;
  let opened: Opened | undefined;
  let closed = false;
  const open = (): Promise<Opened> => {
    if (closed) return Promise.reject(new Error("the JWKS cache's shared tier is closed"));
    opening ??= (async () => {
      const nc = await connectNats(config.natsUrl, "gateway-cache", config.credentials);
      if (closed) {
        await nc.close();
        throw new Error("closed");
      }
      const tier = await createNatsKvTier({
        nc,
        bucket: cacheBucket(config.namespace, "gateway"),
        maxTtlMs: Math.max(options.maxAgeMs, 1_000),
      });
      opened = { tier, close: () => nc.close() };
      return opened;
    })();
    // A failed connect is tried again by a later call.
    opening.catch(() => {
      opening = undefined;
    });
    return opening;
  };
  return {
    adapter: "nats-kv",
    warm: (ms) => within(ms, open()),
    get: async (k) => (await open()).tier.get(k),
    offer: async (k, entry, ttlMs) => (await open()).tier.offer(k, entry, ttlMs),
    async close() {
      // A connect still under way closes its connection when it completes.
      closed = true;
      await opened?.close();
      opened = undefined;
    },
  };
}
