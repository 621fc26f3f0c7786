import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { context, type Meter, propagation, type Tracer, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  type Sampler,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import {
  type BoundCounter,
  type BoundHistogram,
  type BoundHistogramOptions,
  BoundHistogramProducer,
} from "./histogram.js";
import { IdOnlyTracer } from "./id-tracer.js";

export interface TelemetryOptions {
  serviceName: string;
  serviceVersion?: string;
  /**
   * Where spans go: `none` (spans still get ids, so trace ids reach logs and downstream calls,
   * but are not recorded unless `spanProcessors` are given), `console`, or `otlp` (OTLP/HTTP to
   * `otlpEndpoint`).
   */
  tracesExporter?: "none" | "console" | "otlp";
  /** Base URL of an OTLP/HTTP receiver, e.g. `http://127.0.0.1:4318`. */
  otlpEndpoint?: string;
  /** Fraction of new traces to sample (0..1); a sampled parent is always followed. Default 1. */
  sampleRatio?: number;
  /** Extra processors, e.g. an in-memory exporter in tests. */
  spanProcessors?: SpanProcessor[];
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

const loadModule = createRequire(import.meta.url);

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

/**
 * Creates the tracer and meter of one service. Metrics are exposed in the Prometheus text format
 * through `metricsHandler`, which the runtime mounts at `GET /metrics` on the service's port.
 */
export function createTelemetry(options: TelemetryOptions): Telemetry {
  installTelemetryGlobals();
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: options.serviceName,
    [ATTR_SERVICE_VERSION]: options.serviceVersion ?? "0.0.0",
  });
  const processors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  switch (options.tracesExporter ?? "none") {
    case "console":
      processors.push(new BatchSpanProcessor(new ConsoleSpanExporter()));
      break;
    case "otlp": {
      // Loaded only when used: the OTLP exporter and its encoders are about 3 MB of heap, which
      // every major GC of a service that exports nothing would otherwise mark.
      const { OTLPTraceExporter } = loadModule(
        "@opentelemetry/exporter-trace-otlp-http",
      ) as typeof import("@opentelemetry/exporter-trace-otlp-http");
      processors.push(
        new BatchSpanProcessor(
          new OTLPTraceExporter({
            url: `${(options.otlpEndpoint ?? "http://127.0.0.1:4318").replace(/\/$/, "")}/v1/traces`,
          }),
        ),
      );
      break;
    }
    case "none":
      break;
  }
  const sampler = new ParentBasedSampler({ root: rootSampler(options.sampleRatio ?? 1) });
  // Spans that no processor would see are not built: ids and sampling flags only.
  const tracerProvider =
    processors.length > 0
      ? new BasicTracerProvider({ resource, sampler, spanProcessors: processors })
      : undefined;
  const bound = new BoundHistogramProducer({ name: options.serviceName, version: options.serviceVersion });
  const prometheus = new PrometheusExporter({ preventServerStart: true, metricProducers: [bound] });
  const meterProvider = new MeterProvider({ resource, readers: [prometheus] });
  return {
    tracer:
      tracerProvider?.getTracer(options.serviceName, options.serviceVersion) ?? new IdOnlyTracer(sampler),
    meter: meterProvider.getMeter(options.serviceName, options.serviceVersion),
    createBoundHistogram: (name, opts) => bound.create(name, opts),
    createBoundCounter: (name, description) => bound.createCounter(name, description),
    metricsHandler: (req, res) => prometheus.getMetricsRequestHandler(req, res),
    async shutdown() {
      await Promise.allSettled([tracerProvider?.shutdown(), meterProvider.shutdown()]);
    },
  };
}

/** The active span's trace id, or undefined; for log lines and error reports. */
export function activeTraceId(): string | undefined {
  return trace.getActiveSpan()?.spanContext().traceId;
}

/** The ratio sampler hashes every trace id; at the ends of the range the answer is fixed. */
function rootSampler(ratio: number): Sampler {
  if (ratio >= 1) return new AlwaysOnSampler();
  if (ratio <= 0) return new AlwaysOffSampler();
  return new TraceIdRatioBasedSampler(ratio);
}
