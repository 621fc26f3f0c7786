import type { KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { cacheEnvShape } from "@meshwork/cache";
import { type DiscoveryConfig, discoveryEnvShape, toDiscoveryConfig } from "@meshwork/discovery";
import { type NatsCredentials, refuseDefaultNamespaceUnderTest } from "@meshwork/events";
import { ConfigError, type ConnectionLimits, parseEnv, privateKeyFrom } from "@meshwork/runtime";
import { z } from "zod";
import { AUTH_DEFAULTS } from "./auth.js";
import { DEFAULT_AUTH_RATE_LIMITS, parseRateLimits, type RateRule } from "./ratelimit.js";
import { parseRouteSettings } from "./strangler/settings.js";
import type { RouteSetting } from "./strangler/strangler.js";

/**
 * The gateway's `GC_HEAP_GROWING_PERCENT` when it is not set (0 gives the choice back to V8; see
 * `setHeapGrowingPercent` in `@meshwork/runtime/internal`). A gateway copies every call's HTTP/2
 * headers, which Node makes external strings that V8 puts straight into the old generation: dead
 * after the call, freed only by a full GC. With V8's own factor its old generation fills slowly,
 * so full GCs are rare and long and that garbage stays resident (issue 23). Bench, gateway vs
 * the bare proxy in one run (`MESHWORK_BENCH_SERVERS=gateway,proxy`, 3 rounds, load 3-15):
 * V8's choice: 1 full GC of 111 ms in the latency run, RSS 247 MB (proxy 122); 50: 2 full GCs
 * of 24-28 ms, RSS 189 MB (proxy 129); 50 with `--max-semi-space-size=4`: RSS 146 MB (113).
 * 30 against 50, alternated (5 runs each, one round): with a 4 MB semi-space (load 4-11) p99
 * 1.18x against 2.04x the proxy's, req/s 0.85x against 0.59x, RSS 134 against 141 MB; with the
 * 16 MB the gateway runs with (node-options.ts; load 18-32) the machine gave it 140-1,000 req/s,
 * where neither had a full GC in its latency run: nothing to tell them apart, so 50 stays.
 */
export const GATEWAY_HEAP_GROWING_PERCENT = 50;

/**
 * What one client may hold at the edge, by default (issue 25.2). A client is an address: behind
 * a NAT or a proxy many users share one, so raise the per-client limits there.
 */
export const GATEWAY_LIMITS = {
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (Envoy's edge recommendation). */
  maxConcurrentStreams: 100,
  /** First bytes, the HTTP/2 preface and first HEADERS, each HTTP/1.1 header block: within 10 s. */
  headersTimeoutMs: 10_000,
  /** An HTTP/2 connection without a stream open for 5 minutes is closed. */
  idleTimeoutMs: 300_000,
  /**
   * Connections from one address at once: generous, since clients that open a connection per
   * call and leave them idle (until the idle timeout) are common; what they can do is bounded
   * by the calls below.
   */
  maxConnectionsPerAddress: 256,
  /** Calls in flight from one address at once, over all its connections. */
  maxCallsPerClient: 256,
  /**
   * Bytes the gateway holds for one address at once: request bodies kept whole for a retry,
   * answers held back until their end, and answers the client has not taken yet (16 MiB).
   */
  maxBufferedBytesPerClient: 16 * 1024 * 1024,
  /** The same bytes for every address together (256 MiB): many addresses cannot add up past it. */
  maxBufferedBytesTotal: 256 * 1024 * 1024,
  /** HTTP/2 connections to one upstream endpoint at most (each as full as its peer allows). */
  upstreamMaxConnections: 32,
} as const;

const shape = {
  HOST: z.string().min(1).default("127.0.0.1"),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** PEM files: with both, the public port speaks TLS with ALPN (h2 and http/1.1). */
  TLS_CERT_FILE: z.string().min(1).optional(),
  TLS_KEY_FILE: z.string().min(1).optional(),
  /** Loopback by default, as Envoy's admin should be. */
  ADMIN_HOST: z.string().min(1).default("127.0.0.1"),
  ADMIN_PORT: z.coerce.number().int().min(0).max(65535).default(9901),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  /**
   * Endpoints come from the discovery registry (`DISCOVERY=registry`, the default: every
   * instance that announces itself, health-checked) and from static `UPSTREAMS`
   * (`users=http://127.0.0.1:50051,http://127.0.0.1:50061;payments=...`), health-checked too.
   */
  ...discoveryEnvShape(),
  /** The users service's signing keys; tokens are verified against them. */
  JWKS_URL: z.url().default("http://127.0.0.1:50051/.well-known/jwks.json"),
  /** After a fetch, an unknown `kid` waits this long before the key set is fetched again. */
  JWKS_COOLDOWN_MS: z.coerce.number().int().min(0).default(5_000),
  JWT_ISSUER: z.string().min(1).default("meshwork-users"),
  JWT_AUDIENCE: z.string().min(1).default("meshwork"),
  /**
   * The Ed25519 private key (base64url PKCS#8) the gateway signs identity assertions with; the
   * services trust its public key (`IDENTITY_TRUST=gateway=<key>`). Unset: a key made at start,
   * which no service trusts (only anonymous calls then work past the gateway).
   */
  IDENTITY_KEY: z
    .string()
    .transform((text, ctx) => {
      try {
        return privateKeyFrom(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    })
    .optional(),
  /** The issuer name in its assertions: what services list among their edge issuers. */
  IDENTITY_ISSUER: z
    .string()
    .regex(/^[a-z][a-z0-9_-]*$/)
    .default("gateway"),
  /** How long a fetched JWKS is used (ms): the longest a key dropped by a rotation still verifies. */
  JWKS_MAX_AGE_MS: z.coerce.number().int().positive().default(AUTH_DEFAULTS.jwksMaxAgeMs),
  /**
   * Where gateways share the fetched JWKS (the cache's shared tier): `nats` (a KV bucket,
   * `cache-gateway`), `redis` (`REDIS_URL`) or `none`. Default: `redis` with REDIS_URL, else `nats`
   * with the discovery registry (NATS is there anyway), else `none`.
   */
  CACHE_SHARED: cacheEnvShape().CACHE_SHARED,
  REDIS_URL: cacheEnvShape().REDIS_URL,
  /** Deadline of one call to the shared tier; past it the JWKS is fetched directly. */
  CACHE_SHARED_TIMEOUT_MS: cacheEnvShape().CACHE_SHARED_TIMEOUT_MS,
  /** As for the services: prefixes the cache bucket (or Redis keys) of meshes sharing a server. */
  EVENTS_NAMESPACE: z
    .string()
    .regex(/^([a-z0-9_-]+\.)?$/i, "must be empty or a token followed by a dot")
    .default(""),
  /** How far in the future a token's `iat` may be (s). */
  JWT_CLOCK_SKEW_S: z.coerce.number().int().min(0).default(AUTH_DEFAULTS.clockSkewS),
  /** The longest lifetime (`exp` - `iat`) a token may claim (s); a longer one is refused. */
  JWT_MAX_LIFETIME_S: z.coerce.number().int().positive().default(AUTH_DEFAULTS.maxLifetimeS),
  /**
   * Per client address, for the public authentication methods (method keys only), on by default;
   * `off` turns them off (an empty value is taken as unset, so it cannot). Same syntax as
   * RATE_LIMITS.
   */
  AUTH_RATE_LIMITS: z
    .string()
    .default(DEFAULT_AUTH_RATE_LIMITS)
    .transform((text, ctx) => {
      if (text.trim() === "off") return [];
      try {
        return parseRateLimits(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    }),
  /** See `parseRateLimits`: e.g. `*=100/1s:200;meshwork.users.v1.UserService/Login=5/1m`. Empty: none. */
  RATE_LIMITS: z
    .string()
    .default("")
    .transform((text, ctx) => {
      try {
        return parseRateLimits(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    }),
  /**
   * Origins browsers may call from, comma-separated (`https://app.example.com`); `*` for any,
   * only when set so. Default empty: no CORS, every preflight refused.
   */
  CORS_ORIGINS: z
    .string()
    .default("")
    .transform((t) =>
      t
        .split(",")
        .map((o) => o.trim())
        .filter(Boolean),
    ),
  /** Largest request body forwarded (bytes); a larger one answers RESOURCE_EXHAUSTED. */
  MAX_REQUEST_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(4 * 1024 * 1024),
  /** Attempts of an idempotent unary call that meets UNAVAILABLE, the first included (1: none). */
  RETRY_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(3),
  /** Deadline of a call whose client sets none. */
  DEFAULT_TIMEOUT_MS: z.coerce.number().int().positive().default(15_000),
  /** Longest deadline a client may ask for; longer ones are cut to this. */
  MAX_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(10_000),
  /**
   * Server reflection (v1 and v1alpha) answered by the gateway itself from the contracts it
   * routes, so `grpcurl list` and `buf curl` work through the edge. Off: reflection paths are
   * UNIMPLEMENTED, as behind Envoy.
   */
  REFLECTION: z.stringbool().default(true),
  /** Where the gateway's spans go: as for the services (`otlp` to the collector in compose). */
  OTEL_TRACES_EXPORTER: z.enum(["none", "console", "otlp"]).default("none"),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
  /** Limits on what one client holds: see {@link GATEWAY_LIMITS}. */
  MAX_CONCURRENT_STREAMS: z.coerce.number().int().positive().default(GATEWAY_LIMITS.maxConcurrentStreams),
  HEADERS_TIMEOUT_MS: z.coerce.number().int().positive().default(GATEWAY_LIMITS.headersTimeoutMs),
  IDLE_TIMEOUT_MS: z.coerce.number().int().positive().default(GATEWAY_LIMITS.idleTimeoutMs),
  MAX_CONNECTIONS_PER_CLIENT: z.coerce
    .number()
    .int()
    .positive()
    .default(GATEWAY_LIMITS.maxConnectionsPerAddress),
  MAX_CALLS_PER_CLIENT: z.coerce.number().int().positive().default(GATEWAY_LIMITS.maxCallsPerClient),
  MAX_BUFFERED_BYTES_PER_CLIENT: z.coerce
    .number()
    .int()
    .positive()
    .default(GATEWAY_LIMITS.maxBufferedBytesPerClient),
  MAX_BUFFERED_BYTES_TOTAL: z.coerce.number().int().positive().default(GATEWAY_LIMITS.maxBufferedBytesTotal),
  UPSTREAM_MAX_CONNECTIONS: z.coerce.number().int().positive().default(GATEWAY_LIMITS.upstreamMaxConnections),
  /**
   * A port for Envoy's ext_authz filter (`envoy.service.auth.v3.Authorization`, gRPC over h2c)
   * on HOST: Envoy at the edge asks it to authorize each call and gets the identity assertion the
   * services need. Unset: none. Only Envoy may reach it (compose publishes it nowhere).
   */
  EXT_AUTHZ_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /** The legacy monolith behind the REST API under `/api/` (strangler fig); unset: the new services answer it all. */
  STRANGLER_LEGACY_URL: z.url().optional(),
  /** Initial cutover per REST route: `ListProducts=0,shadow;GetProduct=25` (see strangler/settings.ts). */
  STRANGLER_ROUTES: z
    .string()
    .default("")
    .transform((text, ctx) => {
      try {
        return parseRouteSettings(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    }),
  /** As for the services: heap growth between full GCs, in percent; 0 leaves it to V8. */
  GC_HEAP_GROWING_PERCENT: z.coerce.number().int().min(0).max(1000).default(GATEWAY_HEAP_GROWING_PERCENT),
};

export interface GatewayConfig {
  host: string;
  port: number;
  /** PEM certificate and key; TLS (ALPN h2, http/1.1) when both are set. */
  tls?: { cert: string; key: string };
  adminHost: string;
  adminPort: number;
  /** Envoy's ext_authz server on `host` (port 0: any free port); absent: none. */
  extAuthzPort?: number;
  logLevel: string;
  /** Static endpoints per cluster (a service's short name). */
  upstreams: Record<string, string[]>;
  /**
   * Where endpoints come from besides `upstreams`, and whether they are health-checked. Absent:
   * only `upstreams`, trusted without health checks (tests that drive bare upstreams).
   */
  discovery?: DiscoveryConfig;
  jwksUrl: string;
  jwksCooldownMs: number;
  jwtIssuer: string;
  jwtAudience: string;
  /** Signs identity assertions for the services; absent: a key made at start (and a warning). */
  identityKey?: KeyObject;
  /** Default `gateway`. */
  identityIssuer?: string;
  /** Defaults in `AUTH_DEFAULTS` (auth.ts) when absent. */
  jwksMaxAgeMs?: number;
  /** The shared tier of the JWKS cache (see jwks.ts); absent or `none`: each process fetches its own. */
  jwksShared?: JwksSharedConfig;
  /** Deadline of one call to that shared tier (ms; default 100). */
  jwksSharedTimeoutMs?: number;
  jwtClockSkewS?: number;
  jwtMaxLifetimeS?: number;
  rateLimits: RateRule[];
  /** AUTH_RATE_LIMITS: per client address, whatever the token. Absent: the defaults (never none by omission). */
  authRateLimits?: RateRule[];
  corsOrigins: string[];
  maxRequestBytes: number;
  retryMaxAttempts: number;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  shutdownGraceMs: number;
  /** Whether the gateway answers server reflection for the contracts it routes. Default true. */
  reflection?: boolean;
  /** Span export, as for the services; absent: none. */
  tracesExporter?: "none" | "console" | "otlp";
  otlpEndpoint?: string;
  sampleRatio?: number;
  /** V8's heap growing percent for the process; absent: left to V8 (loadConfig: {@link GATEWAY_HEAP_GROWING_PERCENT}). */
  heapGrowingPercent?: number;
  /** Streams per connection, header and idle timeouts, connections per client; absent ones: {@link GATEWAY_LIMITS}. */
  connectionLimits?: Partial<ConnectionLimits>;
  /** Calls one client address may have in flight; absent: {@link GATEWAY_LIMITS}. */
  maxCallsPerClient?: number;
  /** Bytes held for one client address at once (retry copies, held answers, unread answers); absent: {@link GATEWAY_LIMITS}. */
  maxBufferedBytesPerClient?: number;
  /** The same bytes for all addresses together; absent: {@link GATEWAY_LIMITS}. */
  maxBufferedBytesTotal?: number;
  /** HTTP/2 connections to one upstream endpoint at most; absent: {@link GATEWAY_LIMITS}. */
  upstreamMaxConnections?: number;
  /** The strangler fig: the monolith's URL and each REST route's initial weight and shadow. */
  strangler?: { legacyUrl?: string; routes: ReadonlyMap<string, RouteSetting> };
}

/** Where gateways share the fetched JWKS; `namespace` prefixes the bucket or the keys. */
export type JwksSharedConfig =
  | { kind: "nats"; natsUrl: string; credentials?: NatsCredentials; namespace: string }
  | { kind: "redis"; url: string; namespace: string }
  | { kind: "none" };

/** Reads the gateway's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  refuseDefaultNamespaceUnderTest(env, "gateway");
  const e = parseEnv(shape, env);
  if (Boolean(e.TLS_CERT_FILE) !== Boolean(e.TLS_KEY_FILE)) {
    throw new ConfigError("invalid configuration: TLS_CERT_FILE and TLS_KEY_FILE go together");
  }
  const discovery = toDiscoveryConfig(e);
  const sharedKind =
    e.CACHE_SHARED ?? (e.REDIS_URL ? "redis" : discovery.mode === "registry" ? "nats" : "none");
  if (sharedKind === "redis" && !e.REDIS_URL) {
    throw new ConfigError("invalid configuration: CACHE_SHARED=redis needs REDIS_URL");
  }
  const jwksShared: JwksSharedConfig =
    sharedKind === "redis"
      ? { kind: "redis", url: e.REDIS_URL as string, namespace: e.EVENTS_NAMESPACE }
      : sharedKind === "nats"
        ? {
            kind: "nats",
            natsUrl: discovery.natsUrl,
            credentials: discovery.natsCredentials,
            namespace: e.EVENTS_NAMESPACE,
          }
        : { kind: "none" };
  return {
    tls:
      e.TLS_CERT_FILE && e.TLS_KEY_FILE
        ? { cert: readFileSync(e.TLS_CERT_FILE, "utf8"), key: readFileSync(e.TLS_KEY_FILE, "utf8") }
        : undefined,
    host: e.HOST,
    port: e.PORT,
    adminHost: e.ADMIN_HOST,
    adminPort: e.ADMIN_PORT,
    extAuthzPort: e.EXT_AUTHZ_PORT,
    logLevel: e.LOG_LEVEL,
    upstreams: e.UPSTREAMS,
    discovery,
    jwksUrl: e.JWKS_URL,
    jwksCooldownMs: e.JWKS_COOLDOWN_MS,
    jwtIssuer: e.JWT_ISSUER,
    jwtAudience: e.JWT_AUDIENCE,
    identityKey: e.IDENTITY_KEY,
    identityIssuer: e.IDENTITY_ISSUER,
    jwksMaxAgeMs: e.JWKS_MAX_AGE_MS,
    jwksShared,
    jwksSharedTimeoutMs: e.CACHE_SHARED_TIMEOUT_MS,
    jwtClockSkewS: e.JWT_CLOCK_SKEW_S,
    jwtMaxLifetimeS: e.JWT_MAX_LIFETIME_S,
    rateLimits: e.RATE_LIMITS,
    authRateLimits: e.AUTH_RATE_LIMITS,
    corsOrigins: e.CORS_ORIGINS,
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    retryMaxAttempts: e.RETRY_MAX_ATTEMPTS,
    defaultTimeoutMs: e.DEFAULT_TIMEOUT_MS,
    maxTimeoutMs: e.MAX_TIMEOUT_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    reflection: e.REFLECTION,
    tracesExporter: e.OTEL_TRACES_EXPORTER,
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
    sampleRatio: e.OTEL_TRACES_SAMPLER_ARG,
    heapGrowingPercent: e.GC_HEAP_GROWING_PERCENT,
    connectionLimits: {
      maxConcurrentStreams: e.MAX_CONCURRENT_STREAMS,
      headersTimeoutMs: e.HEADERS_TIMEOUT_MS,
      idleTimeoutMs: e.IDLE_TIMEOUT_MS,
      maxConnectionsPerAddress: e.MAX_CONNECTIONS_PER_CLIENT,
    },
    maxCallsPerClient: e.MAX_CALLS_PER_CLIENT,
    maxBufferedBytesPerClient: e.MAX_BUFFERED_BYTES_PER_CLIENT,
    maxBufferedBytesTotal: e.MAX_BUFFERED_BYTES_TOTAL,
    upstreamMaxConnections: e.UPSTREAM_MAX_CONNECTIONS,
    strangler: { legacyUrl: e.STRANGLER_LEGACY_URL, routes: e.STRANGLER_ROUTES },
  };
}
