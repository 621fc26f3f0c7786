import { trace } from "@opentelemetry/api";
import { type DestinationStream, type Logger, pino } from "pino";
import { errorForLog, REDACT_PATHS, scrubText } from "./log-safety.js";

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
 * Secrets must never reach it: log ids and outcomes, not request bodies. Two guards stand behind
 * that rule: `err` / `error` are logged through `errorForLog` (no statement parameters, no
 * Postgres `detail`, hashes and JWTs masked, also when an error was turned into a string), and
 * fields named like secrets (`password`, `token`, `authorization`, `params`, ...) are redacted.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.service },
      messageKey: "msg",
      serializers: { err: errorForLog, error: errorForLog },
      redact: { paths: [...REDACT_PATHS], censor: "[redacted]" },
      hooks: {
        // A message built from an error (`${err}`) gets the same scrubbing as `err` itself.
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === "string" ? scrubText(a) : a)) as typeof args;
          method.apply(this, scrubbed);
        },
      },
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
