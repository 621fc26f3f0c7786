import type { Attributes } from "@opentelemetry/api";
import {
  ConsoleMetricExporter,
  type IMetricReader,
  type MetricProducer,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
} from "@opentelemetry/sdk-metrics";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  type Sampler,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import otelModules from "./otel-modules.cjs";
import {
  batchLimitsFromEnv,
  OtlpBytesSpanProcessor,
  otlpBytesApplies,
  otlpHeadersFromEnv,
  otlpTimeoutFromEnv,
} from "./otlp-bytes-processor.js";

/** The OTLP transports the specification names (`OTEL_EXPORTER_OTLP_PROTOCOL`). */
export type OtlpProtocol = "http/protobuf" | "http/json" | "grpc";

/** Where the standard `OTEL_*` variables are read from: the process's environment by default. */
export type OtelEnv = Readonly<Record<string, string | undefined>>;

function value(env: OtelEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === "" ? undefined : v;
}

function list(env: OtelEnv, name: string): string[] | undefined {
  const v = value(env, name);
  return v
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * `OTEL_RESOURCE_ATTRIBUTES` (`key=value,key2=value2`, values percent-encoded) and
 * `OTEL_SERVICE_NAME`, which wins over a `service.name` in the former, as the specification says.
 * Malformed pairs are skipped.
 */
export function resourceAttributesFromEnv(env: OtelEnv): Attributes {
  const attrs: Attributes = {};
  for (const pair of list(env, "OTEL_RESOURCE_ATTRIBUTES") ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0) continue;
    try {
      attrs[decodeURIComponent(pair.slice(0, eq).trim())] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      // not percent-decodable: skipped
    }
  }
  const name = value(env, "OTEL_SERVICE_NAME");
  if (name) attrs["service.name"] = name;
  return attrs;
}

function ratioSampler(ratio: number): Sampler {
  if (ratio >= 1) return new AlwaysOnSampler();
  if (ratio <= 0) return new AlwaysOffSampler();
  return new TraceIdRatioBasedSampler(ratio);
}

/**
 * `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio`, and their `parentbased_`
 * forms) with `OTEL_TRACES_SAMPLER_ARG` as the ratio; when the variable is not set (or names no
 * known sampler), parent-based with `defaultRatio` for new traces.
 */
export function samplerFromEnv(env: OtelEnv, defaultRatio: number): Sampler {
  const arg = Number(value(env, "OTEL_TRACES_SAMPLER_ARG") ?? "1");
  const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
  switch (value(env, "OTEL_TRACES_SAMPLER")) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratioSampler(ratio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratioSampler(ratio) });
    default:
      return new ParentBasedSampler({ root: ratioSampler(defaultRatio) });
  }
}

/** The OTLP protocol of one signal: its own variable, then the general one, then http/protobuf. */
export function otlpProtocol(
  env: OtelEnv,
  signal: "TRACES" | "METRICS",
  explicit?: OtlpProtocol,
): OtlpProtocol {
  const p =
    explicit ??
    value(env, `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`) ??
    value(env, "OTEL_EXPORTER_OTLP_PROTOCOL");
  if (p === "http/json" || p === "grpc") return p;
  if (p !== undefined && p !== "http/protobuf") {
    throw new Error(
      `OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf, http/json or grpc, got ${JSON.stringify(p)}`,
    );
  }
  return "http/protobuf";
}

/**
 * Where one signal goes: the signal's own endpoint variable as it is (the specification puts it
 * first), else the base endpoint (the explicit one, then `OTEL_EXPORTER_OTLP_ENDPOINT`) with
 * `/v1/traces` or `/v1/metrics` appended for HTTP; gRPC takes the base as it is. Undefined
 * leaves the exporter's own default (`localhost:4318`, `localhost:4317` for gRPC).
 */
function otlpUrl(env: OtelEnv, signal: "TRACES" | "METRICS", protocol: OtlpProtocol, base?: string) {
  const own = value(env, `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`);
  if (own) return own;
  const root = base ?? value(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  if (root === undefined) return undefined;
  if (protocol === "grpc") return root;
  return `${root.replace(/\/$/, "")}/v1/${signal === "TRACES" ? "traces" : "metrics"}`;
}

// The exporters are loaded only when used: an OTLP exporter and its encoders are megabytes of
// heap, which every major GC of a service that exports nothing would otherwise mark.

function otlpSpanExporter(protocol: OtlpProtocol, url: string | undefined): SpanExporter {
  // The three packages export the same constructor shape (their configs differ only in transport
  // options this code does not set).
  const { OTLPTraceExporter } = otelModules.traceExporter[protocol]();
  return new OTLPTraceExporter(url === undefined ? {} : { url });
}

function otlpMetricExporter(protocol: OtlpProtocol, url: string | undefined): PushMetricExporter {
  const { OTLPMetricExporter } = otelModules.metricExporter[protocol]();
  return new OTLPMetricExporter(url === undefined ? {} : { url });
}

/**
 * The span processors of `exporters` (`otlp`, `console`, `none`): one batch processor per OTLP
 * exporter in the selected protocol, a simple one for the console. OTLP over http/protobuf is
 * exported by {@link OtlpBytesSpanProcessor} (spans encoded when they end) unless a setting it
 * does not implement is set (compression, TLS client files); http/json and gRPC by the SDK's
 * `BatchSpanProcessor` and exporter.
 */
export function spanProcessorsFor(
  exporters: readonly string[],
  env: OtelEnv,
  otlp: { endpoint?: string; protocol?: OtlpProtocol },
): SpanProcessor[] {
  const processors: SpanProcessor[] = [];
  for (const name of new Set(exporters)) {
    if (name === "otlp") {
      const protocol = otlpProtocol(env, "TRACES", otlp.protocol);
      const url = otlpUrl(env, "TRACES", protocol, otlp.endpoint);
      const bytesUrl = url ?? "http://localhost:4318/v1/traces";
      if (protocol === "http/protobuf" && otlpBytesApplies(env, bytesUrl)) {
        processors.push(
          new OtlpBytesSpanProcessor({
            url: bytesUrl,
            headers: otlpHeadersFromEnv(env),
            timeoutMillis: otlpTimeoutFromEnv(env),
            ...batchLimitsFromEnv(env),
          }),
        );
      } else {
        processors.push(new BatchSpanProcessor(otlpSpanExporter(protocol, url)));
      }
    } else if (name === "console") {
      processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
    } else if (name !== "none") {
      throw new Error(`OTEL_TRACES_EXPORTER: expected otlp, console or none, got ${JSON.stringify(name)}`);
    }
  }
  return processors;
}

/** The span exporters `OTEL_TRACES_EXPORTER` names, or undefined when it is not set. */
export function tracesExportersFromEnv(env: OtelEnv): string[] | undefined {
  return list(env, "OTEL_TRACES_EXPORTER");
}

/**
 * The metric readers `OTEL_METRICS_EXPORTER` names besides Prometheus (which every service serves
 * at `GET /metrics` anyway): `otlp` pushes every `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60 s)
 * in the selected protocol, `console` prints. Unset, or `prometheus` / `none` only: none.
 */
export function pushMetricReadersFromEnv(
  env: OtelEnv,
  extra: { producers?: MetricProducer[] },
): IMetricReader[] {
  const readers: IMetricReader[] = [];
  const interval = Number(value(env, "OTEL_METRIC_EXPORT_INTERVAL") ?? "60000");
  const exportIntervalMillis = Number.isFinite(interval) && interval > 0 ? interval : 60_000;
  for (const name of new Set(list(env, "OTEL_METRICS_EXPORTER") ?? [])) {
    if (name === "otlp") {
      const protocol = otlpProtocol(env, "METRICS");
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: otlpMetricExporter(protocol, otlpUrl(env, "METRICS", protocol)),
          metricProducers: extra.producers,
          exportIntervalMillis,
          exportTimeoutMillis: Math.min(30_000, exportIntervalMillis),
        }),
      );
    } else if (name === "console") {
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: new ConsoleMetricExporter(),
          exportIntervalMillis,
          metricProducers: extra.producers,
        }),
      );
    } else if (name !== "prometheus" && name !== "none") {
      throw new Error(
        `OTEL_METRICS_EXPORTER: expected otlp, prometheus, console or none, got ${JSON.stringify(name)}`,
      );
    }
  }
  return readers;
}
