import type http from "node:http";
import type http2 from "node:http2";
import type { DescFile } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { meshworkFiles } from "@meshwork/contracts";
import { createDiscovery, type Discovery } from "@meshwork/discovery";
import {
  createListener,
  HealthRegistry,
  type Listener,
  registerHealthService,
  registerReflectionServices,
  ServingStatus,
} from "@meshwork/runtime";
import { setHeapGrowingPercent } from "@meshwork/runtime/internal";
import {
  type BoundCounter,
  createLogger,
  createTelemetry,
  type Logger,
  type Telemetry,
} from "@meshwork/telemetry";
import { createAdminServer } from "./admin.js";
import { createAuthenticator, type Policy, policiesOf } from "./auth.js";
import type { GatewayConfig } from "./config.js";
import { createProxy } from "./proxy.js";
import { RateLimiter } from "./ratelimit.js";
import { buildRoutes, type Route } from "./routes.js";
import { type OutlierPolicy, Upstreams } from "./upstreams.js";

const reflectionPrefixes = [
  "/grpc.reflection.v1.ServerReflection/",
  "/grpc.reflection.v1alpha.ServerReflection/",
];
const healthPrefix = "/grpc.health.v1.Health/";

/** The calling client's address, for calls the gateway answers itself. */
const clientAddress = createContextKey("unknown", { description: "client address" });

/**
 * RESOURCE_EXHAUSTED (with `retry-after`) past a route's rate limit, by client address. Health
 * checks are not limited: a prober must not be told the gateway is down because it asks often.
 */
function rateLimited(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName === "grpc.health.v1.Health") return next(req);
    const limit = limiter.take(
      `/${req.service.typeName}/${req.method.name}`,
      `ip:${req.contextValues.get(clientAddress)}`,
    );
    if (!limit.allowed) {
      throw new ConnectError(
        `rate limit ${limit.rule.text} exceeded; retry in ${limit.retryAfterS}s`,
        Code.ResourceExhausted,
        { "retry-after": String(limit.retryAfterS), "x-ratelimit-limit": String(limit.rule.burst) },
      );
    }
    return next(req);
  };
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
  /** Binds both listeners; resolves with the bound ports. */
  start(): Promise<{ port: number; url: string; adminPort: number; adminUrl: string }>;
  /** Stops taking calls, lets those in flight finish (up to the grace period), closes. */
  stop(): Promise<void>;
}

/**
 * The gateway: one public port (HTTP/1.1 and h2c, sniffed per connection) that forwards every
 * call by its service prefix to an endpoint of that service's cluster, plus the admin listener.
 */
export function createGateway(options: GatewayOptions): Gateway {
  const { config } = options;
  const logger = options.logger ?? createLogger({ service: "gateway", level: config.logLevel });
  const telemetry =
    options.telemetry ??
    createTelemetry({
      serviceName: "gateway",
      tracesExporter: config.tracesExporter,
      otlpEndpoint: config.otlpEndpoint,
      sampleRatio: config.sampleRatio,
    });
  const files = options.files ?? meshworkFiles;
  const routes = buildRoutes(files);
  const table = new Map(routes.map((r) => [r.prefix, r]));
  const limiter = new RateLimiter(config.rateLimits);
  // Calls the gateway answers itself, unless the route table routes them to a cluster:
  // - server reflection of every routed contract (no single service can describe them all),
  //   unless REFLECTION=false;
  // - grpc.health.v1.Health for the gateway itself (service ""): SERVING from start until
  //   stop, for load balancers and probes in front of it.
  // Needing no token, they keep the edge's other limits: request size (no compressed bombs
  // either), the longest deadline, and for reflection the rate limits by client address.
  const health = new HealthRegistry([]);
  const localPrefixes = [...((config.reflection ?? true) ? reflectionPrefixes : []), healthPrefix].filter(
    (p) => !table.has(p),
  );
  const servesReflection = localPrefixes.some((p) => reflectionPrefixes.includes(p));
  const local =
    localPrefixes.length > 0
      ? connectNodeAdapter({
          routes(router) {
            if (localPrefixes.includes(healthPrefix)) registerHealthService(router, health);
            if (servesReflection) registerReflectionServices(router, files);
          },
          readMaxBytes: config.maxRequestBytes,
          acceptCompression: [],
          maxTimeoutMs: config.maxTimeoutMs,
          contextValues: (req) =>
            createContextValues().set(clientAddress, req.socket?.remoteAddress ?? "unknown"),
          interceptors: [rateLimited(limiter)],
        })
      : undefined;
  const isLocal = (path: string | undefined) =>
    local !== undefined && path !== undefined && localPrefixes.some((prefix) => path.startsWith(prefix));
  const upstreams = new Upstreams(config.discovery ? {} : config.upstreams, options.outlier);
  // With discovery, clusters follow the registry and static endpoints, with their health.
  const discovery: Discovery | undefined = config.discovery
    ? createDiscovery(config.discovery, { service: "gateway" }, { logger, meter: telemetry.meter })
    : undefined;
  let unfollow: (() => void) | undefined;
  const follow = async (d: Discovery) => {
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
    unfollow = endpoints.onChange(apply);
    // Ready only once the first health answers are in (or a few seconds passed), so the first
    // calls do not find every endpoint still UNKNOWN.
    await endpoints.settled(5_000);
  };

  const requests = telemetry.createBoundCounter("gateway.requests", "Calls answered, by route and outcome");
  const upstreamRequests = telemetry.createBoundCounter(
    "gateway.upstream.requests",
    "Calls answered, by the upstream endpoint that served them and outcome",
  );
  // Counters bound once per (route or upstream, outcome): two-level maps, no key built per call.
  const bound = new Map<string, Map<string, () => void>>();
  const boundUpstream = new Map<string, Map<string, () => void>>();
  const counterFor = (
    cache: Map<string, Map<string, () => void>>,
    counter: BoundCounter,
    label: "route" | "upstream",
    a: string,
    code: string,
  ) => {
    let inner = cache.get(a);
    if (!inner) {
      inner = new Map();
      cache.set(a, inner);
    }
    let add = inner.get(code);
    if (!add) {
      add = counter.bind({ [label]: a, code });
      inner.set(code, add);
    }
    return add;
  };
  telemetry.meter
    .createObservableGauge("gateway.upstream.active", {
      description: "Calls in flight per upstream endpoint",
    })
    .addCallback((r) => {
      for (const endpoints of upstreams.clusters.values()) {
        for (const e of endpoints) r.observe(e.active, { upstream: e.url, cluster: e.cluster });
      }
    });
  const services = files.flatMap((f) => f.services);
  const proxy = createProxy({
    routes: table,
    policies: options.policies ?? policiesOf(services),
    auth: createAuthenticator({
      jwksUrl: config.jwksUrl,
      cooldownMs: config.jwksCooldownMs,
      issuer: config.jwtIssuer,
      audience: config.jwtAudience,
    }),
    upstreams,
    limiter,
    corsOrigins: config.corsOrigins,
    maxRequestBytes: config.maxRequestBytes,
    // Envoy's defaults: 25 ms base backoff, a budget of 20% of active calls, at least 3.
    retry: { maxAttempts: config.retryMaxAttempts, baseBackoffMs: 25, budgetPercent: 20, minConcurrency: 3 },
    defaultTimeoutMs: config.defaultTimeoutMs,
    maxTimeoutMs: config.maxTimeoutMs,
    logger,
    tracer: telemetry.tracer,
    duration: telemetry.createBoundHistogram("gateway.duration", {
      description: "Time from a call's headers to its last byte, at the gateway",
      unit: "s",
      boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    count(route, code, upstream) {
      counterFor(bound, requests, "route", route, code)();
      if (upstream) counterFor(boundUpstream, upstreamRequests, "upstream", upstream, code)();
    },
  });

  let ready = false;
  const handlers = {
    streamHandler(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
      if (isLocal(headers[":path"])) return false; // answered by `handler`, through Connect
      proxy.stream(stream, headers);
      return true;
    },
    handler(
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) {
      if (local && isLocal(req.url)) local(req, res);
      else proxy.request(req as http.IncomingMessage, res as http.ServerResponse);
    },
  };
  const listener: Listener = createListener({ ...handlers, tls: config.tls });
  const admin = createAdminServer({
    routes,
    upstreams,
    telemetry,
    ready: () => ready,
    config: {
      defaultTimeoutMs: config.defaultTimeoutMs,
      maxTimeoutMs: config.maxTimeoutMs,
      rateLimits: config.rateLimits.map((r) => r.text),
      maxRequestBytes: config.maxRequestBytes,
      retry: {
        maxAttempts: config.retryMaxAttempts,
        on: ["unavailable"],
        budgetPercent: 20,
        minConcurrency: 3,
      },
      corsOrigins: config.corsOrigins,
      reflection: servesReflection,
    },
  });

  return {
    logger,
    upstreams,
    routes,
    async start() {
      // As in the services: V8's heap growth between full GCs, when configured (the runtime's heap.ts).
      const { heapGrowingPercent } = config;
      setHeapGrowingPercent(heapGrowingPercent);
      if (discovery) await follow(discovery);
      const port = await listener.listen(config.port, config.host);
      const adminPort = await new Promise<number>((resolve, reject) => {
        admin.once("error", reject);
        admin.listen(config.adminPort, config.adminHost, () => {
          const a = admin.address();
          resolve(typeof a === "object" && a ? a.port : config.adminPort);
        });
      });
      ready = true;
      health.set("", ServingStatus.SERVING);
      const url = `${config.tls ? "https" : "http"}://${config.host}:${port}`;
      const adminUrl = `http://${config.adminHost}:${adminPort}`;
      logger.info(
        { host: config.host, port, url, adminPort, adminUrl, routes: routes.length, heapGrowingPercent },
        "listening",
      );
      return { port, url, adminPort, adminUrl };
    },
    async stop() {
      ready = false;
      // Watchers see NOT_SERVING, then their streams end (they would hold the drain).
      health.set("", ServingStatus.NOT_SERVING);
      health.close();
      await listener.close(config.shutdownGraceMs);
      unfollow?.();
      await discovery?.close();
      upstreams.close();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      await telemetry.shutdown();
    },
  };
}
