export {
  type ClientMethodMetrics,
  type ClientMetrics,
  type ClientMetricsSource,
  clientMetricsOf,
  codeName,
} from "./client-metrics.js";
export { createClientTracingInterceptor, endClientSpan, rpcClientAttributes } from "./client-tracing.js";
export { remainingIncomingMs, requestTimeout, withIncomingDeadline } from "./deadline.js";
export type { BoundCounter, BoundHistogram, BoundHistogramOptions } from "./histogram.js";
export { injectIds, recordsSpans } from "./id-tracer.js";
export { type LeanSpanStarter, leanSpanStarter } from "./lean-span.js";
export { createLineWriter, jsonString, type LineLevel, type LineWriter } from "./log-line.js";
export {
  errorForLog,
  exceptionForSpan,
  type LoggedError,
  REDACT_PATHS,
  type SpanException,
  scrubText,
} from "./log-safety.js";
export {
  createLogDestination,
  createLogger,
  LOG_BATCH_BYTES,
  LOG_FLUSH_MS,
  type LogDestination,
  type LogDestinationOptions,
  type Logger,
  type LoggerOptions,
} from "./logger.js";
export type { OtelEnv, OtlpProtocol } from "./otel-env.js";
export {
  type BatchLimits,
  batchLimitsFromEnv,
  type OtlpBytesExporterOptions,
  OtlpBytesSpanProcessor,
} from "./otlp-bytes-processor.js";
export { OtlpWriter, writeResource, writeScope, writeSpan } from "./otlp-writer.js";
export { onStreamEnd } from "./stream-end.js";
export {
  activeTraceId,
  createTelemetry,
  installTelemetryGlobals,
  processTelemetry,
  processTracer,
  startTelemetry,
  type Telemetry,
  type TelemetryOptions,
} from "./telemetry.js";
