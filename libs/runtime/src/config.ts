import type { TelemetryOptions } from "@meshwork/telemetry";
import { z } from "zod";
import { type ClientProtocol, DEFAULT_CLIENT_PROTOCOL } from "./client.js";
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from "./connection-limits.js";
import { type IdentityConfig, identityEnvShape, toIdentityConfig } from "./identity/config.js";

/**
 * How long a readiness check may take: a dependency that hangs (a database whose socket died
 * without a reset, say) must turn the service NOT_SERVING, not leave it SERVING forever.
 */
export const DEFAULT_READINESS_TIMEOUT_MS = 5_000;

/**
 * The environment variables every service reads, as a zod shape to spread into a service's own
 * schema. Each process is one service, so the names are plain (`PORT`, not `USERS_PORT`).
 */
export function runtimeEnvShape(defaults: { port: number }) {
  return {
    HOST: z.string().min(1).default("127.0.0.1"),
    PORT: z.coerce.number().int().min(0).max(65535).default(defaults.port),
    LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
    /** How long in-flight calls get to finish after SIGTERM/SIGINT. */
    SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(10_000),
    /** How often readiness checks (database, dependencies) run once the service is up. */
    HEALTH_CHECK_INTERVAL_MS: z.coerce.number().int().positive().default(5_000),
    /** A readiness check that has not answered within this counts as failed (NOT_SERVING). */
    READINESS_TIMEOUT_MS: z.coerce.number().int().positive().default(DEFAULT_READINESS_TIMEOUT_MS),
    /** Largest request message accepted, in bytes. */
    READ_MAX_BYTES: z.coerce
      .number()
      .int()
      .positive()
      .default(4 * 1024 * 1024),
    OTEL_TRACES_EXPORTER: z.enum(["none", "console", "otlp"]).default("none"),
    OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
    OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
    /** The protocol of calls to other services: `grpc` (measured fastest) or `connect`. */
    RPC_CLIENT_PROTOCOL: z.enum(["grpc", "connect"]).default(DEFAULT_CLIENT_PROTOCOL),
    /**
     * How far the heap may grow between full GCs, in percent (V8's `--heap-growing-percent`);
     * unset leaves it to V8. Smaller means shorter, more frequent full-GC pauses: a lower worst
     * case and less memory, but more requests delayed by one (see `heap.ts`).
     */
    GC_HEAP_GROWING_PERCENT: z.coerce.number().int().min(0).max(1000).optional(),
    ...identityEnvShape(),
    /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open at once. */
    MAX_CONCURRENT_STREAMS: z.coerce
      .number()
      .int()
      .positive()
      .default(DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams),
    /** A connection's first request headers (and each HTTP/1.1 request's) must arrive within this. */
    HEADERS_TIMEOUT_MS: z.coerce
      .number()
      .int()
      .positive()
      .default(DEFAULT_CONNECTION_LIMITS.headersTimeoutMs),
    /** An HTTP/2 connection with no stream open this long is closed. */
    IDLE_TIMEOUT_MS: z.coerce.number().int().positive().default(DEFAULT_CONNECTION_LIMITS.idleTimeoutMs),
    /** Connections one client address may hold at once; unset: no limit. */
    MAX_CONNECTIONS_PER_CLIENT: z.coerce.number().int().positive().optional(),
  };
}

type RuntimeEnv = z.infer<z.ZodObject<ReturnType<typeof runtimeEnvShape>>>;

/** The runtime's part of a service's configuration. */
export interface RuntimeConfig {
  host: string;
  port: number;
  logLevel: string;
  shutdownGraceMs: number;
  healthCheckIntervalMs: number;
  /** How long one readiness check may take before it counts as failed; {@link DEFAULT_READINESS_TIMEOUT_MS} when absent. */
  readinessTimeoutMs?: number;
  readMaxBytes: number;
  tracesExporter: "none" | "console" | "otlp";
  otlpEndpoint: string | undefined;
  sampleRatio: number;
  /** Protocol of calls to other services; {@link DEFAULT_CLIENT_PROTOCOL} when absent. */
  clientProtocol?: ClientProtocol;
  /** V8's heap growing percent for the process (`setHeapGrowingPercent`); absent: left to V8. */
  heapGrowingPercent?: number;
  /** Who this service trusts to say who calls, and its own key; absent: nobody (see `IdentityConfig`). */
  identity?: IdentityConfig;
  /** Limits on the service's connections; each absent one is {@link DEFAULT_CONNECTION_LIMITS}'. */
  connectionLimits?: Partial<ConnectionLimits>;
}

/** Maps the parsed environment to the runtime's configuration. */
export function toRuntimeConfig(env: RuntimeEnv): RuntimeConfig {
  return {
    host: env.HOST,
    port: env.PORT,
    logLevel: env.LOG_LEVEL,
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
    healthCheckIntervalMs: env.HEALTH_CHECK_INTERVAL_MS,
    readinessTimeoutMs: env.READINESS_TIMEOUT_MS,
    readMaxBytes: env.READ_MAX_BYTES,
    tracesExporter: env.OTEL_TRACES_EXPORTER,
    otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT,
    sampleRatio: env.OTEL_TRACES_SAMPLER_ARG,
    clientProtocol: env.RPC_CLIENT_PROTOCOL,
    heapGrowingPercent: env.GC_HEAP_GROWING_PERCENT,
    identity: toIdentityConfig(env),
    connectionLimits: {
      maxConcurrentStreams: env.MAX_CONCURRENT_STREAMS,
      headersTimeoutMs: env.HEADERS_TIMEOUT_MS,
      idleTimeoutMs: env.IDLE_TIMEOUT_MS,
      maxConnectionsPerAddress: env.MAX_CONNECTIONS_PER_CLIENT ?? Number.POSITIVE_INFINITY,
    },
  };
}

/** Thrown when the environment does not satisfy a service's schema; names every bad variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * Parses `env` against `shape` once. A service calls this in its `config.ts` (the only reader of
 * `process.env`) and passes the result down; it never reads the environment again.
 */
export function parseEnv<S extends z.ZodRawShape>(
  shape: S,
  env: Record<string, string | undefined> = process.env,
): z.infer<z.ZodObject<S>> {
  // Empty strings mean "unset", as in most shells' `FOO= cmd`.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ""));
  const result = z.object(shape).safeParse(cleaned);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  return result.data;
}

/**
 * The telemetry of service `name` at `version` as its configuration asks (`OTEL_*`): what
 * `createService` starts, and what a service that needs its meter before the service exists
 * (for a cache's metrics, say) passes to `createTelemetry` itself.
 */
export function telemetryOptions(
  name: string,
  version: string | undefined,
  config: RuntimeConfig,
): TelemetryOptions {
  return {
    serviceName: name,
    serviceVersion: version,
    tracesExporter: config.tracesExporter,
    otlpEndpoint: config.otlpEndpoint,
    sampleRatio: config.sampleRatio,
  };
}
