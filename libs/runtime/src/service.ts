import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { type ConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createLogger, errorForLog, type Logger, startTelemetry, type Telemetry } from "@meshwork/telemetry";
import { sliceLargeWrites } from "./answer-slices.js";
import type { RuntimeConfig } from "./config.js";
import { createDecodeErrorInterceptor, defaultCompression, guardDecoding } from "./decode-errors.js";
import { createCallValues, GrpcUnaryFastPath } from "./grpc-unary.js";
import { HealthRegistry, registerHealthService, ServingStatus } from "./health.js";
import { setHeapGrowingPercent } from "./heap.js";
import { createServiceIdentity, type ServiceIdentity } from "./identity/index.js";
import { createDeadlineInterceptor } from "./interceptors/deadline.js";
import { createErrorInterceptor } from "./interceptors/errors.js";
import { createNulStringInterceptor } from "./interceptors/nul-strings.js";
import { admittedKey, createReadinessInterceptor } from "./interceptors/readiness.js";
import { createTelemetryInterceptor } from "./interceptors/telemetry.js";
import { createValidationInterceptor } from "./interceptors/validation.js";
import { createListener, type Listener } from "./listener.js";
import { registerReflectionServices } from "./reflection.js";
import { buildCommit, observeBuildInfo } from "./version.js";

/** A plain HTTP endpoint served beside the RPCs on the same port (HTTP/1.1 and HTTP/2). */
export type HttpRoute = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void | Promise<void>;

/** A named dependency check; throws (or rejects) while the dependency does not answer. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

export interface ServiceOptions {
  /** Short service name (`users`): the log `service` field and the telemetry resource name. */
  name: string;
  /** The service package's version (`packageVersion(import.meta.url)`): telemetry, `meshwork_build_info`. */
  version?: string;
  /** The commit it was built from; default {@link buildCommit} (`MESHWORK_BUILD_COMMIT`). */
  commit?: string;
  config: RuntimeConfig;
  /** The contract files this service implements, described by reflection. */
  files: readonly DescFile[];
  /** The RPC services registered by `routes`, reported by health under their full names. */
  services: readonly DescService[];
  routes(router: ConnectRouter): void;
  /** Extra HTTP endpoints by exact path, e.g. `/.well-known/jwks.json`. */
  httpRoutes?: Record<string, HttpRoute>;
  /** Runs once after the port is bound, before the service reports SERVING (migrations). */
  prepare?: () => Promise<void>;
  /** Checked before SERVING and then every `healthCheckIntervalMs`. */
  readiness?: readonly ReadinessCheck[];
  /**
   * Tells the mesh where this instance is, once it is SERVING (discovery's `announce`); the
   * function it returns withdraws it, at the start of shutdown, before calls drain.
   */
  announce?: (where: { host: string; port: number }) => Promise<() => Promise<void>>;
  /** Runs during shutdown after the last call finished (close pools, connections). */
  onShutdown?: () => Promise<void>;
  /** Interceptors that run inside the runtime's, closest to the handler. */
  interceptors?: readonly Interceptor[];
  /**
   * Recognises errors that mean a dependency cannot be reached (`isConnectionError` from
   * `@meshwork/db` for the service's database). Such an error that escapes a handler is answered
   * UNAVAILABLE (retryable) instead of INTERNAL; the driver's message stays in the log.
   */
  unavailableWhen?: (err: unknown) => boolean;
  /**
   * Recognises errors that mean the client's value was refused further down (`invalidValueOf`
   * from `@meshwork/db`: a PostgreSQL data exception, class 22) and says what was wrong. Such an
   * error that escapes a handler is answered INVALID_ARGUMENT with that text instead of INTERNAL.
   */
  invalidWhen?: (err: unknown) => string | undefined;
  /**
   * Serve unary gRPC calls (binary, uncompressed, over HTTP/2) on the runtime's fast path rather
   * than through the Connect adapter. Same interceptors, answers and trailers; default true.
   */
  fastPath?: boolean;
  /**
   * Supply to share or observe them (tests); created from `config` and the `OTEL_*` variables
   * otherwise, by `startTelemetry` (the process's telemetry, through `@opentelemetry/sdk-node`).
   */
  logger?: Logger;
  telemetry?: Telemetry;
}

/** A running (or startable) service process. */
export interface Service {
  readonly logger: Logger;
  readonly telemetry: Telemetry;
  readonly health: HealthRegistry;
  /** Verifies who calls (before any handler) and asserts this service in its own calls. */
  readonly identity: ServiceIdentity;
  /** Binds the port, runs `prepare`, then reports SERVING once readiness checks pass. */
  start(): Promise<{ port: number; url: string }>;
  /** Drains and stops: NOT_SERVING, refuse new calls, let in-flight calls finish, close. */
  shutdown(): Promise<void>;
}

/**
 * Builds a service on the Meshwork runtime: one port for HTTP/1.1 and h2c serving Connect,
 * gRPC and gRPC-Web; health and reflection; the interceptor chain (telemetry, error hiding,
 * decode errors, deadline, readiness, identity, NUL strings, validation, then the service's own);
 * `GET /metrics` and `GET /healthz`. Bad input is INVALID_ARGUMENT naming the problem, never
 * INTERNAL: a body that does not decode, a NUL in a string field, a protovalidate rule broken, or
 * (through `invalidWhen`) a value the database refuses.
 */
export function createService(options: ServiceOptions): Service {
  const { config } = options;
  const logger = options.logger ?? createLogger({ service: options.name, level: config.logLevel });
  const telemetry =
    options.telemetry ??
    startTelemetry({
      serviceName: options.name,
      serviceVersion: options.version,
      tracesExporter: config.tracesExporter,
      otlpEndpoint: config.otlpEndpoint,
      sampleRatio: config.sampleRatio,
    });
  const health = new HealthRegistry(options.services.map((s) => s.typeName));
  const identity = createServiceIdentity(config.identity, options.name, logger);
  const interceptors: Interceptor[] = [
    createTelemetryInterceptor({ telemetry, logger }),
    createErrorInterceptor(logger, options.unavailableWhen, options.invalidWhen),
    createDecodeErrorInterceptor(),
    createDeadlineInterceptor(),
    createReadinessInterceptor(),
    // Who calls is settled before validation and before any handler runs.
    identity.interceptor,
    createNulStringInterceptor(),
    createValidationInterceptor(),
    ...(options.interceptors ?? []),
  ];
  // Whether each request arrived while SERVING; decided when its headers arrive.
  const admitted = new WeakMap<object, boolean>();
  const fast =
    options.fastPath === false
      ? undefined
      : new GrpcUnaryFastPath({
          interceptors,
          readMaxBytes: config.readMaxBytes,
          contextValues: () => createCallValues().set(admittedKey, health.serving),
        });
  const rpc = connectNodeAdapter({
    routes(inner) {
      const router = fast ? fast.record(inner) : inner;
      registerHealthService(router, health);
      registerReflectionServices(router, options.files);
      options.routes(router);
      // Undecodable request bodies answer INVALID_ARGUMENT rather than Connect's INTERNAL.
      const handlers = inner.handlers;
      for (let i = 0; i < handlers.length; i++) {
        handlers[i] = guardDecoding(
          handlers[i] as (typeof handlers)[number],
          config.readMaxBytes,
          defaultCompression,
        );
      }
    },
    // The compressions guardDecoding reads too (gzip, brotli: connect-node's default).
    acceptCompression: [...defaultCompression],
    interceptors,
    readMaxBytes: config.readMaxBytes,
    contextValues: (req) => createContextValues().set(admittedKey, admitted.get(req) ?? health.serving),
  });
  const httpRoutes: Record<string, HttpRoute> = {
    "/metrics": (req, res) => telemetry.metricsHandler(req as IncomingMessage, res as ServerResponse),
    "/healthz": (_req, res) => {
      const body = JSON.stringify({ status: ServingStatus[health.get("") ?? ServingStatus.NOT_SERVING] });
      res.writeHead(health.serving ? 200 : 503, { "content-type": "application/json" });
      res.end(body);
    },
    ...options.httpRoutes,
  };

  observeBuildInfo(telemetry.meter, {
    service: options.name,
    version: options.version ?? "0.0.0",
    commit: options.commit ?? buildCommit(),
  });
  let listener: Listener | undefined;
  telemetry.meter
    .createObservableGauge("http.server.active_requests", {
      description: "Requests being served (RPCs and plain HTTP), including the scrape itself",
    })
    .addCallback((result) => result.observe(listener?.inFlight ?? 0));
  let checkTimer: NodeJS.Timeout | undefined;
  let stopping: Promise<void> | undefined;
  let withdraw: (() => Promise<void>) | undefined;

  const runChecks = async (): Promise<boolean> => {
    for (const c of options.readiness ?? []) {
      try {
        await c.check();
      } catch (err) {
        logger.warn({ check: c.name, err: String(err) }, "readiness check failed");
        return false;
      }
    }
    return true;
  };

  const applyChecks = async () => {
    if (stopping) return;
    const ok = await runChecks();
    if (stopping) return;
    const was = health.serving;
    health.setAll(ok ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    if (was !== ok) logger.info({ status: ok ? "SERVING" : "NOT_SERVING" }, "health changed");
  };

  return {
    logger,
    telemetry,
    health,
    identity,
    async start() {
      const { heapGrowingPercent } = config;
      setHeapGrowingPercent(heapGrowingPercent);
      listener = createListener({
        limits: config.connectionLimits,
        streamHandler: fast && ((stream, headers) => fast.handle(stream, headers)),
        handler(req, res) {
          const path = req.url?.split("?", 1)[0] ?? "/";
          const route = req.method === "GET" ? httpRoutes[path] : undefined;
          if (route) {
            Promise.resolve(route(req, res)).catch((err) => {
              logger.error({ err: errorForLog(err), path }, "http route failed");
              if (!res.headersSent) res.writeHead(500);
              res.end();
            });
            return;
          }
          const contentType = req.headers["content-type"];
          if (typeof contentType === "string" && contentType.startsWith("application/grpc-web-text")) {
            refuseGrpcWebText(contentType, res);
            return;
          }
          admitted.set(req, health.serving);
          if ("stream" in res) sliceLargeWrites(res);
          rpc(req, res);
        },
      });
      const port = await listener.listen(config.port, config.host);
      const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
      logger.info({ port, host: config.host, url, heapGrowingPercent }, "listening");
      await options.prepare?.();
      // Readiness: poll quickly until the first success, then at the configured interval.
      while (!stopping && !(await runChecks())) {
        await new Promise((r) => setTimeout(r, 200));
      }
      if (!stopping) {
        health.setAll(ServingStatus.SERVING);
        logger.info({ status: "SERVING" }, "health changed");
        checkTimer = setInterval(() => void applyChecks(), config.healthCheckIntervalMs);
        checkTimer.unref();
        if (options.announce) {
          withdraw = await options.announce({ host: config.host, port });
          logger.info({ port }, "announced");
        }
      }
      return { port, url };
    },
    shutdown() {
      stopping ??= (async () => {
        clearInterval(checkTimer);
        health.setAll(ServingStatus.NOT_SERVING);
        await withdraw?.().catch((err) => logger.warn({ err }, "withdrawing from discovery failed"));
        logger.info({ inFlight: listener?.inFlight ?? 0, graceMs: config.shutdownGraceMs }, "draining");
        health.close();
        await listener?.close(config.shutdownGraceMs);
        try {
          await options.onShutdown?.();
        } catch (err) {
          logger.error({ err }, "shutdown hook failed");
        }
        logger.info("stopped");
        await telemetry.shutdown();
        await new Promise<void>((resolve) => logger.flush(() => resolve()));
      })();
      return stopping;
    },
  };
}

/**
 * Runs a service as the process's main program: starts it, and on SIGTERM or SIGINT shuts it
 * down gracefully and exits 0. A failure to start is logged and exits 1.
 */
export async function runService(service: Service): Promise<void> {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    service.logger.info({ signal }, "shutting down");
    service.shutdown().then(
      () => process.exit(0),
      (err) => {
        service.logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    await service.start();
  } catch (err) {
    service.logger.fatal({ err }, "failed to start");
    await service.shutdown().catch(() => {});
    process.exit(1);
  }
}

/**
 * gRPC-Web's text mode (base64 bodies, `application/grpc-web-text`) is not served (connect-node
 * reads binary gRPC-Web only, and answered a bare HTTP 415 that clients read as UNKNOWN): it is
 * UNIMPLEMENTED, trailers-only, naming the content type to send instead.
 */
function refuseGrpcWebText(contentType: string, res: ServerResponse | Http2ServerResponse): void {
  res.writeHead(200, {
    "content-type": contentType,
    "grpc-status": "12",
    "grpc-message": encodeURIComponent(
      "gRPC-Web text (application/grpc-web-text, base64) is not supported: send application/grpc-web+proto",
    ),
  });
  res.end();
}
