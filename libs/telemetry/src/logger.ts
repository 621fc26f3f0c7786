import { trace } from "@opentelemetry/api";
import { type DestinationStream, type Logger, pino } from "pino";

/** A pino logger; re-exported so services do not depend on pino directly. */
export type { Logger } from "pino";

export interface LoggerOptions {
  /** Goes on every line as `service`. */
  service: string;
  /** pino level name; default `info`. */
  level?: string;
  /** Where lines go; default stdout. Tests pass a stream to read the lines back. */
  destination?: DestinationStream;
}

/**
 * Creates the process logger: pino JSON, one line per event, with `service`, `level` (as a
 * name, not pino's number), `time` (ISO) and, when a span is active, its `trace_id` and
 * `span_id`, so a log line can be joined to its trace.
 *
 * Secrets must never reach it: log ids and outcomes, not request bodies.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.service },
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
      },
      mixin() {
        const span = trace.getActiveSpan();
        if (!span) return {};
        const ctx = span.spanContext();
        return { trace_id: ctx.traceId, span_id: ctx.spanId };
      },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
