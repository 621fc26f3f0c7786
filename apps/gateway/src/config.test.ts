import { parseUpstreams } from "@meshwork/discovery";
import { ConfigError } from "@meshwork/runtime";
import { describe, expect, it } from "vitest";
import { GATEWAY_HEAP_GROWING_PERCENT, loadConfig } from "./config.js";

describe("gateway config", () => {
  it("defaults to port 8080, admin on loopback 9901, endpoints from the discovery registry", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 8080,
      adminHost: "127.0.0.1",
      adminPort: 9901,
      defaultTimeoutMs: 15_000,
    });
    expect(c.upstreams).toEqual({});
    expect(c.discovery).toMatchObject({ mode: "registry", bucket: "meshwork_registry", ttlMs: 10_000 });
    expect(
      loadConfig({ DISCOVERY: "static", UPSTREAMS: "users=http://127.0.0.1:50051" }).discovery,
    ).toMatchObject({
      mode: "static",
      upstreams: { users: ["http://127.0.0.1:50051"] },
    });
    expect(() => loadConfig({ DISCOVERY: "dns" })).toThrow(/DISCOVERY/);
  });

  // Issue 25.9: browsers get CORS only from origins configured; `*` only when set so.
  it("allows no CORS origin unless configured, and reads the list", () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(loadConfig({ CORS_ORIGINS: " https://a.example , https://b.example " }).corsOrigins).toEqual([
      "https://a.example",
      "https://b.example",
    ]);
    expect(loadConfig({ CORS_ORIGINS: "*" }).corsOrigins).toEqual(["*"]);
  });

  it("limits token lifetimes and clock skew, with defaults", () => {
    expect(loadConfig({})).toMatchObject({
      jwtClockSkewS: 30,
      jwtMaxLifetimeS: 86_400,
      jwksMaxAgeMs: 300_000,
    });
    expect(
      loadConfig({ JWT_CLOCK_SKEW_S: "5", JWT_MAX_LIFETIME_S: "3600", JWKS_MAX_AGE_MS: "1000" }),
    ).toMatchObject({ jwtClockSkewS: 5, jwtMaxLifetimeS: 3600, jwksMaxAgeMs: 1000 });
    expect(() => loadConfig({ JWT_MAX_LIFETIME_S: "0" })).toThrow(/JWT_MAX_LIFETIME_S/);
  });

  it("bounds V8's heap growth by default (GATEWAY_HEAP_GROWING_PERCENT); GC_HEAP_GROWING_PERCENT=0 leaves it to V8", () => {
    expect(loadConfig({}).heapGrowingPercent).toBe(GATEWAY_HEAP_GROWING_PERCENT);
    expect(loadConfig({ GC_HEAP_GROWING_PERCENT: "" }).heapGrowingPercent).toBe(GATEWAY_HEAP_GROWING_PERCENT);
    expect(loadConfig({ GC_HEAP_GROWING_PERCENT: "0" }).heapGrowingPercent).toBe(0);
    expect(loadConfig({ GC_HEAP_GROWING_PERCENT: "50" }).heapGrowingPercent).toBe(50);
    expect(() => loadConfig({ GC_HEAP_GROWING_PERCENT: "1001" })).toThrow(/GC_HEAP_GROWING_PERCENT/);
    expect(() => loadConfig({ GC_HEAP_GROWING_PERCENT: "half" })).toThrow(/GC_HEAP_GROWING_PERCENT/);
  });

  it("limits what one client holds, with documented defaults each variable overrides", () => {
    expect(loadConfig({})).toMatchObject({
      connectionLimits: {
        maxConcurrentStreams: 100,
        headersTimeoutMs: 10_000,
        idleTimeoutMs: 300_000,
        maxConnectionsPerAddress: 256,
      },
      maxCallsPerClient: 256,
      maxBufferedBytesPerClient: 16 * 1024 * 1024,
      maxBufferedBytesTotal: 256 * 1024 * 1024,
      upstreamMaxConnections: 32,
    });
    expect(
      loadConfig({
        MAX_CONCURRENT_STREAMS: "10",
        HEADERS_TIMEOUT_MS: "500",
        IDLE_TIMEOUT_MS: "1000",
        MAX_CONNECTIONS_PER_CLIENT: "4",
        MAX_CALLS_PER_CLIENT: "8",
        MAX_BUFFERED_BYTES_PER_CLIENT: "65536",
        MAX_BUFFERED_BYTES_TOTAL: "1048576",
        UPSTREAM_MAX_CONNECTIONS: "2",
      }),
    ).toMatchObject({
      connectionLimits: {
        maxConcurrentStreams: 10,
        headersTimeoutMs: 500,
        idleTimeoutMs: 1000,
        maxConnectionsPerAddress: 4,
      },
      maxCallsPerClient: 8,
      maxBufferedBytesPerClient: 65536,
      maxBufferedBytesTotal: 1048576,
      upstreamMaxConnections: 2,
    });
    expect(() => loadConfig({ MAX_CALLS_PER_CLIENT: "0" })).toThrow(/MAX_CALLS_PER_CLIENT/);
  });

  it("limits the authentication methods per address by default; AUTH_RATE_LIMITS=off turns that off, empty does not", () => {
    const base = { DISCOVERY: "static", UPSTREAMS: "users=http://127.0.0.1:1" };
    const keys = (env: Record<string, string>) =>
      loadConfig({ ...base, ...env }).authRateLimits?.map((r) => r.key);
    const defaults = [
      "meshwork.users.v1.UserService/Login",
      "meshwork.users.v1.UserService/RegisterUser",
      "meshwork.users.v1.UserService/CreateFirstAdmin",
      "meshwork.users.v1.UserService/ExchangeLegacyToken",
    ];
    expect(keys({})).toEqual(defaults);
    // An empty variable reads as unset (a stray `AUTH_RATE_LIMITS=` never disarms the defence).
    expect(keys({ AUTH_RATE_LIMITS: "" })).toEqual(defaults);
    expect(keys({ AUTH_RATE_LIMITS: "off" })).toEqual([]);
    expect(keys({ AUTH_RATE_LIMITS: "meshwork.users.v1.UserService/Login=5/1m" })).toEqual([defaults[0]]);
  });

  it("answers server reflection unless REFLECTION=false", () => {
    expect(loadConfig({}).reflection).toBe(true);
    expect(loadConfig({ REFLECTION: "false" }).reflection).toBe(false);
    expect(() => loadConfig({ REFLECTION: "maybe" })).toThrow(/REFLECTION/);
  });

  it("reads several endpoints per cluster and names what is wrong", () => {
    expect(parseUpstreams(" users = http://a:1 , http://b:2/ ; x.y=http://c:3")).toEqual({
      users: ["http://a:1", "http://b:2"],
      "x.y": ["http://c:3"],
    });
    expect(() => parseUpstreams("users")).toThrow(/<service>=<url>/);
    expect(() => parseUpstreams("users=https://a:1")).toThrow(/only http:\/\//);
    expect(() => loadConfig({ UPSTREAMS: "=http://a:1" })).toThrow(ConfigError);
    expect(() => loadConfig({ UPSTREAMS: "users=not a url" })).toThrow(/UPSTREAMS/);
  });

  // Issue 18.3: where gateways share the JWKS they fetch.
  it("shares the JWKS on NATS KV with the registry, on Redis with REDIS_URL, else not at all", () => {
    expect(loadConfig({}).jwksShared).toEqual({
      kind: "nats",
      natsUrl: "nats://127.0.0.1:4222",
      credentials: undefined,
      namespace: "",
    });
    expect(loadConfig({ DISCOVERY: "static" }).jwksShared).toEqual({ kind: "none" });
    expect(
      loadConfig({ DISCOVERY: "static", CACHE_SHARED: "nats", EVENTS_NAMESPACE: "t1." }).jwksShared,
    ).toMatchObject({ kind: "nats", namespace: "t1." });
    expect(loadConfig({ REDIS_URL: "redis://r:6379" }).jwksShared).toEqual({
      kind: "redis",
      url: "redis://r:6379",
      namespace: "",
    });
    expect(loadConfig({ REDIS_URL: "redis://r:6379", CACHE_SHARED: "none" }).jwksShared).toEqual({
      kind: "none",
    });
    expect(loadConfig({}).jwksSharedTimeoutMs).toBe(100);
    expect(() => loadConfig({ CACHE_SHARED: "redis" })).toThrow(/CACHE_SHARED=redis needs REDIS_URL/);
    expect(() => loadConfig({ CACHE_SHARED: "memcached" })).toThrow(/CACHE_SHARED/);
    expect(() => loadConfig({ REDIS_URL: "http://r" })).toThrow(/REDIS_URL/);
    expect(() => loadConfig({ EVENTS_NAMESPACE: "t1" })).toThrow(/EVENTS_NAMESPACE/);
    // Under test (a process a test spawned inherits VITEST), the default namespace is refused.
    expect(() => loadConfig({ VITEST: "true" })).toThrow(/^gateway: EVENTS_NAMESPACE is empty under test/);
    expect(loadConfig({ VITEST: "true", EVENTS_NAMESPACE: "t1." }).port).toBeTypeOf("number");
  });
});
