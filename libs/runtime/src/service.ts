import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { createLogger, type Logger, startTelemetry, type Telemetry } from "@meshwork/telemetry";
import { type RuntimeConfig, telemetryOptions } from "./config.js";
import { createCallValues, GrpcUnaryFastPath } from "./grpc-unary.js";
import { HealthRegistry } from "./health.js";
import { createServiceIdentity, type ServiceIdentity } from "./identity/index.js";
import { admittedKey } from "./interceptors/readiness.js";
import { ServiceLifecycle } from "./service-lifecycle.js";
import {
  createRequestHandler,
  createRpcAdapter,
  httpRoutesOf,
  serviceInterceptors,
} from "./service-routes.js";
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
    options.telemetry ?? startTelemetry(telemetryOptions(options.name, options.version, config));
  const health = new HealthRegistry(options.services.map((s) => s.typeName));
  const identity = createServiceIdentity(config.identity, options.name, logger);
  const interceptors = serviceInterceptors(options, telemetry, logger, identity);
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
  const rpc = createRpcAdapter(options, interceptors, fast, health, admitted);
  const handler = createRequestHandler(
    httpRoutesOf(options, telemetry, health),
    rpc,
    admitted,
    health,
    logger,
  );
  observeBuildInfo(telemetry.meter, {
    service: options.name,
    version: options.version ?? "0.0.0",
    commit: options.commit ?? buildCommit(),
  });
  return new ServiceLifecycle(options, { logger, telemetry, health, identity, fast, handler });
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
