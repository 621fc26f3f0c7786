export { createClientTracingInterceptor } from "./client-tracing.js";
export { remainingIncomingMs, requestTimeout, withIncomingDeadline } from "./deadline.js";
export type { BoundCounter, BoundHistogram, BoundHistogramOptions } from "./histogram.js";
export { recordsSpans } from "./id-tracer.js";
export { createLogger, type Logger, type LoggerOptions } from "./logger.js";
export {
  activeTraceId,
  createTelemetry,
  installTelemetryGlobals,
  type Telemetry,
  type TelemetryOptions,
} from "./telemetry.js";
