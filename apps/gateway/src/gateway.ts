import { generateKeyPairSync } from "node:crypto";
import type http from "node:http";
import type http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { DescFile } from "@bufbuild/protobuf";
import { meshworkFiles } from "@meshwork/contracts";
import { createDiscovery, type Discovery } from "@meshwork/discovery";
import {
  buildCommit,
  type ConnectionLimits,
  createAssertionSigner,
  createListener,
  type Listener,
  observeBuildInfo,
  packageVersion,
  ServingStatus,
} from "@meshwork/runtime";
import { setHeapGrowingPercent } from "@meshwork/runtime/internal";
import { createLogger, createTelemetry, type Logger, type Telemetry } from "@meshwork/telemetry";
import { createAdminServer } from "./admin.js";
import { AUTH_DEFAULTS, createAuthenticator, type Policy, policiesOf } from "./auth.js";
import { GATEWAY_LIMITS, type GatewayConfig } from "./config.js";
import { createExtAuthzServer } from "./ext-authz.js";
import { openJwksSharedTier } from "./jwks.js";
import { createLocalCalls, type LocalCalls } from "./local.js";
import { createGatewayMetrics } from "./metrics.js";
import { createProxy, type GatewayProxy, type RetryPolicy } from "./proxy/index.js";
import { DEFAULT_AUTH_RATE_LIMITS, parseRateLimits, RateLimiter, type RateRule } from "./ratelimit.js";
import { buildRoutes, type Route } from "./routes.js";
import type { LegacySessions } from "./strangler/legacy-sessions.js";
import { Strangler } from "./strangler/strangler.js";
import { type OutlierPolicy, Upstreams } from "./upstreams.js";

/** Retries as Envoy does by default: 25 ms base backoff, a budget of 20% of active calls, at least 3. */
function retryPolicyOf(config: GatewayConfig): RetryPolicy {
  return { maxAttempts: config.retryMaxAttempts, baseBackoffMs: 25, budgetPercent: 20, minConcurrency: 3 };
}

/** The limits on what one client holds at the edge: configured, else {@link GATEWAY_LIMITS}. */
function limitsOf(config: GatewayConfig): ConnectionLimits {
  const { maxConcurrentStreams, headersTimeoutMs, idleTimeoutMs, maxConnectionsPerAddress } = GATEWAY_LIMITS;
  return {
    maxConcurrentStreams,
    headersTimeoutMs,
    idleTimeoutMs,
    maxConnectionsPerAddress,
    ...config.connectionLimits,
  };
}

function maxCallsOf(config: GatewayConfig): number {
  return config.maxCallsPerClient ?? GATEWAY_LIMITS.maxCallsPerClient;
}

function maxBufferedBytesOf(config: GatewayConfig): number {
  return config.maxBufferedBytesPerClient ?? GATEWAY_LIMITS.maxBufferedBytesPerClient;
}

function maxBufferedTotalOf(config: GatewayConfig): number {
  return config.maxBufferedBytesTotal ?? GATEWAY_LIMITS.maxBufferedBytesTotal;
}

function upstreamConnectionsOf(config: GatewayConfig): number {
  return config.upstreamMaxConnections ?? GATEWAY_LIMITS.upstreamMaxConnections;
}

/** The authentication rate limits: as configured, else the defaults (on unless turned off). */
function authRulesOf(config: GatewayConfig): RateRule[] {
  return config.authRateLimits ?? parseRateLimits(DEFAULT_AUTH_RATE_LIMITS);
}

/** What `/config_dump` shows of the configuration. */
function configDump(config: GatewayConfig, retry: RetryPolicy, reflection: boolean): Record<string, unknown> {
  return {
    defaultTimeoutMs: config.defaultTimeoutMs,
    maxTimeoutMs: config.maxTimeoutMs,
    rateLimits: config.rateLimits.map((r) => r.text),
    authRateLimits: authRulesOf(config).map((r) => r.text),
    maxRequestBytes: config.maxRequestBytes,
    limits: {
      ...limitsOf(config),
      maxCallsPerClient: maxCallsOf(config),
      maxBufferedBytesPerClient: maxBufferedBytesOf(config),
      maxBufferedBytesTotal: maxBufferedTotalOf(config),
      upstreamMaxConnections: upstreamConnectionsOf(config),
    },
    retry: {
      maxAttempts: retry.maxAttempts,
      on: ["unavailable"],
      budgetPercent: retry.budgetPercent,
      minConcurrency: retry.minConcurrency,
    },
    corsOrigins: config.corsOrigins,
    reflection,
  };
}

/**
 * Makes the clusters follow the registry (static endpoints included, with their health); resolves
 * with the function that stops following, once the first health answers are in (or a few seconds
 * passed), so the first calls do not find every endpoint still UNKNOWN.
 */
async function followDiscovery(d: Discovery, upstreams: Upstreams, logger: Logger): Promise<() => void> {
  const endpoints = await d.endpoints();
  const apply = (service: string) => {
    const list = endpoints.all(service).map((e) => ({ url: e.url, health: e.health }));
    upstreams.setEndpoints(service, list);
    logger.info(
      { cluster: service, endpoints: list.map((e) => `${e.url} ${e.health}`) },
      "cluster endpoints changed",
    );
  };
  for (const s of endpoints.services()) apply(s);
  const unfollow = endpoints.onChange(apply);
  await endpoints.settled(5_000);
  return unfollow;
}

/** Binds the admin listener; resolves with its port. */
function listenAdmin(admin: http.Server, port: number, host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    admin.once("error", reject);
    admin.listen(port, host, () => {
      const a = admin.address();
      resolve(typeof a === "object" && a ? a.port : port);
    });
  });
}

/** The public port: calls the gateway answers itself go to `local`, every other one is proxied. */
function createPublicListener(
  config: GatewayConfig,
  local: LocalCalls,
  proxy: GatewayProxy,
  strangler: Strangler,
): Listener {
  return createListener({
    streamHandler(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
      if (local.isLocal(headers[":path"])) return false; // answered by `handler`, through Connect
      if (strangler.handles(headers[":path"])) return false; // the legacy REST API, by `handler`
      proxy.stream(stream, headers);
      return true;
    },
    handler(
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) {
      if (local.isLocal(req.url)) local.handler(req, res);
      else if (strangler.handles(req.url)) strangler.handle(req, res);
      else proxy.request(req as http.IncomingMessage, res as http.ServerResponse);
    },
    tls: config.tls,
    limits: limitsOf(config),
  });
}

export interface GatewayOptions {
  config: GatewayConfig;
  /** The contracts routed: a route per service. Default: every Meshwork contract. */
  files?: readonly DescFile[];
  /** Access policies by method path, instead of the contracts' options (tests of routing alone). */
  policies?: ReadonlyMap<string, Policy>;
  logger?: Logger;
  telemetry?: Telemetry;
  outlier?: OutlierPolicy;
}

export interface Gateway {
  readonly logger: Logger;
  readonly upstreams: Upstreams;
  readonly routes: readonly Route[];
  /** The legacy REST API's routes and their cutover. */
  readonly strangler: Strangler;
  /** Binds both listeners; resolves with the bound ports. */
  start(): Promise<{
    port: number;
    url: string;
    adminPort: number;
    adminUrl: string;
    /** The ext_authz server's port, when EXT_AUTHZ_PORT is set. */
    extAuthzPort: number | undefined;
  }>;
  /** Stops taking calls, lets those in flight finish (up to the grace period), closes, writes its log lines. */
  stop(): Promise<void>;
}

/**
 * Bytes of log lines the gateway's logger gathers per write (the access log, a line per call):
 * 16 KiB rather than the default 4 (a write costs about the same whatever its size; ~1 µs less
 * CPU per access line, see `createLogDestination`'s `batchBytes`). Also for an embedding process
 * that gives the gateway a logger of its own.
 */
export const GATEWAY_LOG_BATCH_BYTES = 16 * 1024;

/** Batched: an access line per call, written 16 KiB at a time (within 100 ms, and at exit). */
function gatewayLogger(config: GatewayConfig): Logger {
  return createLogger({
    service: "gateway",
    level: config.logLevel,
    batch: true,
    batchBytes: GATEWAY_LOG_BATCH_BYTES,
  });
}

/** The gateway package's version (`meshwork_build_info`, its registry record, telemetry). */
const VERSION = packageVersion(import.meta.url);

function telemetryOf(options: GatewayOptions): Telemetry {
  const { config } = options;
  return (
    options.telemetry ??
    createTelemetry({
      serviceName: "gateway",
      serviceVersion: VERSION,
      tracesExporter: config.tracesExporter,
      otlpEndpoint: config.otlpEndpoint,
      sampleRatio: config.sampleRatio,
    })
  );
}

/** With discovery, clusters follow the registry and static endpoints, with their health. */
function discoveryOf(config: GatewayConfig, logger: Logger, telemetry: Telemetry): Discovery | undefined {
  if (!config.discovery) return undefined;
  return createDiscovery(
    config.discovery,
    { service: "gateway", version: VERSION },
    { logger, meter: telemetry.meter },
  );
}

/** The key set's shared tier, the authenticator over it and the signer of verified identities. */
function createIdentity(config: GatewayConfig, telemetry: Telemetry, logger: Logger) {
  if (!config.identityKey) {
    logger.warn(
      "IDENTITY_KEY is not set: assertions are signed with a key made at start, which no service trusts",
    );
  }
  const jwksShared = openJwksSharedTier(config.jwksShared, {
    maxAgeMs: config.jwksMaxAgeMs ?? AUTH_DEFAULTS.jwksMaxAgeMs,
  });
  // One authenticator (its verified-token cache) and one signer for the proxy and Envoy's ext_authz.
  const auth = createAuthenticator({
    jwksUrl: config.jwksUrl,
    cooldownMs: config.jwksCooldownMs,
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    jwksMaxAgeMs: config.jwksMaxAgeMs,
    clockSkewS: config.jwtClockSkewS,
    maxLifetimeS: config.jwtMaxLifetimeS,
    // The key set is cached here and in the shared tier, so gateways fetch it once between them.
    shared: jwksShared,
    sharedTimeoutMs: config.jwksSharedTimeoutMs,
    meter: telemetry.meter,
    logger,
  });
  const assert = createAssertionSigner({
    issuer: config.identityIssuer ?? "gateway",
    privateKey: config.identityKey ?? generateKeyPairSync("ed25519").privateKey,
  });
  return { jwksShared, auth, assert };
}

type GatewayIdentity = ReturnType<typeof createIdentity>;

/** What the proxy and Envoy's ext_authz server are built from. */
interface ProxyParts {
  config: GatewayConfig;
  table: ReadonlyMap<string, Route>;
  policies: ReadonlyMap<string, Policy>;
  identity: GatewayIdentity;
  upstreams: Upstreams;
  limiter: RateLimiter;
  retry: RetryPolicy;
  logger: Logger;
  telemetry: Telemetry;
  metrics: ReturnType<typeof createGatewayMetrics>;
}

function extAuthzOf(p: ProxyParts, sessions: LegacySessions): http2.Http2Server | undefined {
  if (p.config.extAuthzPort === undefined) return undefined;
  const { config } = p;
  return createExtAuthzServer({
    routes: p.table,
    rules: {
      policies: p.policies,
      defaultTimeoutMs: config.defaultTimeoutMs,
      maxTimeoutMs: config.maxTimeoutMs,
    },
    auth: p.identity.auth,
    assert: p.identity.assert,
    limiter: p.limiter,
    logger: p.logger,
    sessions,
  });
}

function proxyOf(p: ProxyParts): GatewayProxy {
  const { config } = p;
  return createProxy({
    routes: p.table,
    policies: p.policies,
    auth: p.identity.auth,
    assert: p.identity.assert,
    upstreams: p.upstreams,
    limiter: p.limiter,
    corsOrigins: config.corsOrigins,
    maxRequestBytes: config.maxRequestBytes,
    maxCallsPerClient: maxCallsOf(config),
    maxBufferedBytesPerClient: maxBufferedBytesOf(config),
    maxBufferedBytesTotal: maxBufferedTotalOf(config),
    retry: p.retry,
    defaultTimeoutMs: config.defaultTimeoutMs,
    maxTimeoutMs: config.maxTimeoutMs,
    logger: p.logger,
    tracer: p.telemetry.tracer,
    clientMetrics: p.telemetry,
    duration: p.metrics.duration,
    count: p.metrics.count,
  });
}

/** Everything a built gateway starts and stops, and whether it is ready. */
interface GatewayParts {
  config: GatewayConfig;
  logger: Logger;
  telemetry: Telemetry;
  routes: readonly Route[];
  local: LocalCalls;
  upstreams: Upstreams;
  discovery: Discovery | undefined;
  identity: GatewayIdentity;
  strangler: Strangler;
  listener: Listener;
  admin: http.Server;
  extAuthz: http2.Http2Server | undefined;
  state: { ready: boolean; unfollow: (() => void) | undefined };
}

type Started = Awaited<ReturnType<Gateway["start"]>>;

async function listenExtAuthz(extAuthz: http2.Http2Server | undefined, config: GatewayConfig) {
  if (!extAuthz) return undefined;
  await new Promise<void>((resolve, reject) => {
    extAuthz.once("error", reject);
    extAuthz.listen(config.extAuthzPort, config.host, () => resolve());
  });
  return (extAuthz.address() as AddressInfo).port;
}

async function startGateway(p: GatewayParts): Promise<Started> {
  const { config } = p;
  // As in the services: V8's heap growth between full GCs, when configured (the runtime's heap.ts).
  const { heapGrowingPercent } = config;
  setHeapGrowingPercent(heapGrowingPercent);
  if (p.discovery) p.state.unfollow = await followDiscovery(p.discovery, p.upstreams, p.logger);
  // The JWKS cache's shared tier connects now if it can (the first calls then find it), but
  // the gateway does not wait on it for long: without it, the key set is fetched directly.
  await p.identity.jwksShared?.warm(2_000);
  const port = await p.listener.listen(config.port, config.host);
  const adminPort = await listenAdmin(p.admin, config.adminPort, config.adminHost);
  const extAuthzPort = await listenExtAuthz(p.extAuthz, config);
  p.state.ready = true;
  p.local.health.set("", ServingStatus.SERVING);
  const url = `${config.tls ? "https" : "http"}://${config.host}:${port}`;
  const adminUrl = `http://${config.adminHost}:${adminPort}`;
  p.logger.info(
    {
      host: config.host,
      port,
      url,
      adminPort,
      adminUrl,
      extAuthzPort,
      routes: p.routes.length,
      heapGrowingPercent,
    },
    "listening",
  );
  return { port, url, adminPort, adminUrl, extAuthzPort };
}

async function stopGateway(p: GatewayParts): Promise<void> {
  p.state.ready = false;
  // Watchers see NOT_SERVING, then their streams end (they would hold the drain).
  p.local.health.set("", ServingStatus.NOT_SERVING);
  p.local.health.close();
  await p.listener.close(p.config.shutdownGraceMs);
  p.state.unfollow?.();
  await p.discovery?.close();
  p.upstreams.close();
  p.strangler.close();
  await new Promise<void>((resolve) => p.admin.close(() => resolve()));
  const { extAuthz } = p;
  if (extAuthz?.listening) await new Promise<void>((resolve) => extAuthz.close(() => resolve()));
  await p.identity.auth.close();
  p.admin.closeAllConnections();
  await p.telemetry.shutdown();
  // The last lines written before stop() resolves (main.ts exits then): pino's exit handler
  // writes what is queued, but not a write still under way in libuv's threads.
  await new Promise<void>((resolve) => p.logger.flush(() => resolve()));
}

/**
 * The gateway: one public port (HTTP/1.1 and h2c, sniffed per connection) that forwards every
 * call by its service prefix to an endpoint of that service's cluster, plus the admin listener.
 */
export function createGateway(options: GatewayOptions): Gateway {
  const { config } = options;
  const logger = options.logger ?? gatewayLogger(config);
  const telemetry = telemetryOf(options);
  observeBuildInfo(telemetry.meter, { service: "gateway", version: VERSION, commit: buildCommit() });
  const files = options.files ?? meshworkFiles;
  const routes = buildRoutes(files);
  const table = new Map(routes.map((r) => [r.prefix, r]));
  const limiter = new RateLimiter(config.rateLimits, authRulesOf(config));
  const local = createLocalCalls(config, files, table, limiter);
  const upstreams = new Upstreams(config.discovery ? {} : config.upstreams, options.outlier, {
    maxConnectionsPerEndpoint: upstreamConnectionsOf(config),
  });
  const discovery = discoveryOf(config, logger, telemetry);
  const metrics = createGatewayMetrics(telemetry, upstreams);
  const retry = retryPolicyOf(config);
  const policies = options.policies ?? policiesOf(files.flatMap((f) => f.services));
  const identity = createIdentity(config, telemetry, logger);
  const parts: ProxyParts = {
    config,
    table,
    policies,
    identity,
    upstreams,
    limiter,
    retry,
    logger,
    telemetry,
    metrics,
  };
  const proxy = proxyOf(parts);
  const strangler = new Strangler({
    files,
    legacyUrl: config.strangler?.legacyUrl,
    prefix: "/api/",
    routes: config.strangler?.routes ?? new Map(),
    maxRequestBytes: config.maxRequestBytes,
    dispatch: (down) => proxy.dispatch(down),
    logger,
  });
  // Envoy's ext_authz exchanges legacy sessions with the strangler's cache.
  const extAuthz = extAuthzOf(parts, strangler.sessions);
  const state: GatewayParts["state"] = { ready: false, unfollow: undefined };
  const listener = createPublicListener(config, local, proxy, strangler);
  const admin = createAdminServer({
    routes,
    upstreams,
    telemetry,
    ready: () => state.ready,
    config: configDump(config, retry, local.servesReflection),
    strangler,
  });

  const running: GatewayParts = {
    config,
    logger,
    telemetry,
    routes,
    local,
    upstreams,
    discovery,
    identity,
    strangler,
    listener,
    admin,
    extAuthz,
    state,
  };
  return {
    logger,
    upstreams,
    routes,
    strangler,
    start: () => startGateway(running),
    stop: () => stopGateway(running),
  };
}
