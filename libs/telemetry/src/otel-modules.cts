/**
 * The OpenTelemetry modules this library loads only when a process uses them (the SDK, when it
 * records spans or metrics; an OTLP exporter, when it exports), each named by a literal `require`.
 *
 * CommonJS on purpose: a bundler (`meshwork-bundle`, esbuild) follows a literal `require` into the
 * bundle and still runs the module only when the function is called, where a `createRequire`
 * call with a variable name hides the module from it, so a bundled service would load the SDK's
 * ~470 files one by one at start-up. Unbundled, this is plain `require`.
 */

type NodeSdkModule = typeof import("@opentelemetry/sdk-node");
type TraceExporterModule = typeof import("@opentelemetry/exporter-trace-otlp-proto");
type MetricExporterModule = typeof import("@opentelemetry/exporter-metrics-otlp-proto");

const otelModules = {
  /**
   * `NodeSDK` from its own module rather than the package's index: the index also loads the
   * SDK's declarative-configuration entry point (780 kB of generated schema, and `yaml`).
   */
  nodeSdk: (): Pick<NodeSdkModule, "NodeSDK"> => require("@opentelemetry/sdk-node/build/src/sdk.js"),
  /** The three OTLP trace exporters export the same constructor shape. */
  traceExporter: {
    "http/protobuf": (): TraceExporterModule => require("@opentelemetry/exporter-trace-otlp-proto"),
    "http/json": (): TraceExporterModule => require("@opentelemetry/exporter-trace-otlp-http"),
    grpc: (): TraceExporterModule => require("@opentelemetry/exporter-trace-otlp-grpc"),
  },
  metricExporter: {
    "http/protobuf": (): MetricExporterModule => require("@opentelemetry/exporter-metrics-otlp-proto"),
    "http/json": (): MetricExporterModule => require("@opentelemetry/exporter-metrics-otlp-http"),
    grpc: (): MetricExporterModule => require("@opentelemetry/exporter-metrics-otlp-grpc"),
  },
};

export = otelModules;
