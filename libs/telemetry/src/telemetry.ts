import type { IncomingMessage, ServerResponse } from "node:http";
import { context, type Meter, metrics, propagation, type Tracer, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import {
  type BoundCounter,
  type BoundHistogram,
  type BoundHistogramOptions,
  BoundHistogramProducer,
} from "./histogram.js";
import { IdOnlyTracer } from "./id-tracer.js";
import {
  type OtelEnv,
  type OtlpProtocol,
  pushMetricReadersFromEnv,
  resourceAttributesFromEnv,
  samplerFromEnv,
  spanProcessorsFor,
  tracesExportersFromEnv,
} from "./otel-env.js";
import otelModules from "./otel-modules.cjs";

/**
 * `NodeSDK` from its own module rather than the package's index. The index also loads the SDK's
 * declarative-configuration entry point (`startNodeSDK`: `@opentelemetry/configuration`, 780 kB of
 * generated schema, and `yaml`), which this library does not use; measured on the users service
 * exporting to `meshctl up`'s receiver, that was about a quarter of its start-up. The package has
 * no `exports` map, so the path is public to Node; `install.test.ts` checks it is the SDK's own
 * `NodeSDK`, and that `otel-modules.cts` (which loads it) names this module.
 */
export const NODE_SDK_MODULE = "@opentelemetry/sdk-node/build/src/sdk.js";

export interface TelemetryOptions {
  /** The default `service.name`; `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) wins. */
  serviceName: string;
  serviceVersion?: string;
  /**
   * Where spans go: `none` (spans still get ids, so trace ids reach logs and downstream calls,
   * but are not recorded unless `spanProcessors` are given), `console`, or `otlp`. Default: what
   * `OTEL_TRACES_EXPORTER` says (a list), else `none`.
   */
  tracesExporter?: "none" | "console" | "otlp";
  /**
   * Base URL of an OTLP receiver, e.g. `http://127.0.0.1:4318` (`/v1/traces` is appended over
   * HTTP). Default: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, or `OTEL_EXPORTER_OTLP_ENDPOINT`.
   */
  otlpEndpoint?: string;
  /** Default: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `http/protobuf`. */
  otlpProtocol?: OtlpProtocol;
  /**
   * Fraction of new traces to sample (0..1); a sampled parent is always followed. Default 1.
   * `OTEL_TRACES_SAMPLER` (with `OTEL_TRACES_SAMPLER_ARG`), when set, chooses the sampler instead.
   */
  sampleRatio?: number;
  /** Extra processors, e.g. an in-memory exporter in tests. */
  spanProcessors?: SpanProcessor[];
  /**
   * Where the standard `OTEL_*` variables are read (`OTEL_SERVICE_NAME`,
   * `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_*`,
   * `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_METRICS_EXPORTER`, `OTEL_METRIC_EXPORT_INTERVAL`).
   * Default `process.env`, as every OpenTelemetry SDK does.
   */
  env?: OtelEnv;
}

/** What a process's telemetry gives its code. */
export interface Telemetry {
  tracer: Tracer;
  meter: Meter;
  /** A histogram recorded through pre-bound attribute sets (hot paths), exported with the rest. */
  createBoundHistogram(name: string, options: BoundHistogramOptions): BoundHistogram;
  /** A counter added to through pre-bound attribute sets (hot paths), exported with the rest. */
  createBoundCounter(name: string, description: string): BoundCounter;
  /** Serves the Prometheus text exposition (`GET /metrics`). */
  metricsHandler(req: IncomingMessage, res: ServerResponse): void;
  /** Flushes pending spans and stops the providers. */
  shutdown(): Promise<void>;
}

let globalsInstalled = false;

/**
 * Installs, once per process, the pieces of OpenTelemetry that must be global: the
 * AsyncLocalStorage context manager (so the active span follows `await`) and the W3C trace
 * context + baggage propagators. Tracer and meter providers are not global: several services can
 * share one process in tests, each with its own.
 */
export function installTelemetryGlobals(): void {
  if (globalsInstalled) return;
  globalsInstalled = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(
    new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  );
}

/** What both entry points build from the options and the environment. */
function components(options: TelemetryOptions) {
  const env = options.env ?? process.env;
  const resource = defaultResource()
    .merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: options.serviceName,
        [ATTR_SERVICE_VERSION]: options.serviceVersion ?? "0.0.0",
      }),
    )
    .merge(resourceFromAttributes(resourceAttributesFromEnv(env)));
  const exporters = options.tracesExporter ? [options.tracesExporter] : (tracesExportersFromEnv(env) ?? []);
  const processors: SpanProcessor[] = [
    ...(options.spanProcessors ?? []),
    ...spanProcessorsFor(exporters, env, { endpoint: options.otlpEndpoint, protocol: options.otlpProtocol }),
  ];
  const sampler = samplerFromEnv(env, options.sampleRatio ?? 1);
  const bound = new BoundHistogramProducer({ name: options.serviceName, version: options.serviceVersion });
  const prometheus = new PrometheusExporter({ preventServerStart: true, metricProducers: [bound] });
  const readers = [prometheus, ...pushMetricReadersFromEnv(env, { producers: [bound] })];
  return { resource, processors, sampler, bound, prometheus, readers };
}

function telemetryOf(
  c: ReturnType<typeof components>,
  tracer: Tracer,
  meter: Meter,
  shutdown: () => Promise<unknown>,
): Telemetry {
  return {
    tracer,
    meter,
    createBoundHistogram: (name, opts) => c.bound.create(name, opts),
    createBoundCounter: (name, description) => c.bound.createCounter(name, description),
    metricsHandler: (req, res) => c.prometheus.getMetricsRequestHandler(req, res),
    async shutdown() {
      await shutdown();
    },
  };
}

/**
 * Creates the tracer and meter of one service, with providers of its own (not registered
 * globally), so several services can share a process (tests). Configured by `options` and the
 * standard `OTEL_*` variables (see {@link TelemetryOptions.env}). Metrics are exposed in the
 * Prometheus text format through `metricsHandler`, which the runtime mounts at `GET /metrics` on
 * the service's port, and pushed over OTLP too when `OTEL_METRICS_EXPORTER` includes `otlp`.
 *
 * When no span processor would see a span (nothing exports), the tracer is the id-only tracer:
 * spans get ids and sampling flags (for log lines and the `traceparent` sent downstream) and
 * nothing else is built.
 */
export function createTelemetry(options: TelemetryOptions): Telemetry {
  installTelemetryGlobals();
  const c = components(options);
  const tracerProvider =
    c.processors.length > 0
      ? new BasicTracerProvider({ resource: c.resource, sampler: c.sampler, spanProcessors: c.processors })
      : undefined;
  const meterProvider = new MeterProvider({ resource: c.resource, readers: c.readers });
  return telemetryOf(
    c,
    tracerProvider?.getTracer(options.serviceName, options.serviceVersion) ?? new IdOnlyTracer(c.sampler),
    meterProvider.getMeter(options.serviceName, options.serviceVersion),
    () => Promise.allSettled([tracerProvider?.shutdown(), meterProvider.shutdown()]),
  );
}

let started = false;
/** The tracer startTelemetry made for this process, once it ran. */
let processWide: Tracer | undefined;
/** The telemetry startTelemetry made for this process, once it ran. */
let processWideTelemetry: Telemetry | undefined;
const globalTracer = trace.getTracer("@meshwork/telemetry");

/**
 * The tracer of instrumentation given none of its own (client transports, databases): the one
 * {@link startTelemetry} made for this process (the id-only tracer itself when nothing exports,
 * so callers can take its fast path), else the global tracer provider's. Read it per use, not
 * once: it changes when the process's telemetry starts.
 */
export function processTracer(): Tracer {
  return processWide ?? globalTracer;
}

/**
 * The telemetry {@link startTelemetry} made for this process, or undefined before it ran: where
 * instrumentation given no telemetry of its own (client transports) exports its metrics.
 */
export function processTelemetry(): Telemetry | undefined {
  return processWideTelemetry;
}

/**
 * The telemetry of a service process, through `@opentelemetry/sdk-node`: the same components as
 * {@link createTelemetry} (options and `OTEL_*` variables), handed to a `NodeSDK` that registers
 * its tracer and meter providers globally, so instrumentation that takes no tracer of its own (a
 * client transport or a database opened without `telemetry`, third-party OpenTelemetry
 * instrumentation) records into this service's pipeline. `OTEL_SDK_DISABLED` and
 * `OTEL_LOG_LEVEL` are the SDK's. With nothing exporting (no span exporter, metrics only
 * scraped), the SDK is not even loaded: the id-only tracer and the meter provider are registered
 * directly (ids only, as in {@link createTelemetry}).
 *
 * Global registration happens once per process: a later call (a second service in a test
 * process) gets {@link createTelemetry}'s providers of its own.
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  if (started) return createTelemetry(options);
  started = true;
  installTelemetryGlobals();
  const c = components(options);
  if (c.processors.length === 0 && c.readers.length === 1) {
    // Nothing exports (Prometheus is scraped): the SDK is not loaded at all. Loading
    // @opentelemetry/sdk-node takes seconds and ~30 MB of heap (every exporter it knows), which
    // every major GC of the process would mark for nothing. Ids only, registered globally.
    const idOnly = new IdOnlyTracer(c.sampler);
    trace.setGlobalTracerProvider({ getTracer: () => idOnly });
    processWide = idOnly;
    const meterProvider = new MeterProvider({ resource: c.resource, readers: c.readers });
    metrics.setGlobalMeterProvider(meterProvider);
    processWideTelemetry = telemetryOf(
      c,
      idOnly,
      meterProvider.getMeter(options.serviceName, options.serviceVersion),
      () => meterProvider.shutdown(),
    );
    return processWideTelemetry;
  }
  const { NodeSDK } = otelModules.nodeSdk();
  const sdk = new NodeSDK({
    resource: c.resource,
    autoDetectResources: false, // the resource above already holds OTEL_RESOURCE_ATTRIBUTES
    sampler: c.sampler,
    spanProcessors: c.processors,
    metricReaders: c.readers,
    logRecordProcessors: [], // logs are pino lines on stdout
    // Installed by installTelemetryGlobals (null: the SDK registers none of its own).
    contextManager: null as never,
    textMapPropagator: null,
  });
  sdk.start();
  let tracer: Tracer;
  if (c.processors.length > 0) {
    tracer = trace.getTracer(options.serviceName, options.serviceVersion);
  } else {
    const idOnly = new IdOnlyTracer(c.sampler);
    trace.setGlobalTracerProvider({ getTracer: () => idOnly });
    tracer = idOnly;
  }
  processWide = tracer;
  processWideTelemetry = telemetryOf(
    c,
    tracer,
    metrics.getMeter(options.serviceName, options.serviceVersion),
    () => sdk.shutdown(),
  );
  return processWideTelemetry;
}

/** The active span's trace id, or undefined; for log lines and error reports. */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}
