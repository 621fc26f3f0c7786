import { trace } from "@opentelemetry/api";
import { type DestinationStream, type Logger, pino } from "pino";
import { gatherLines } from "./log-batch.js";
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
  /**
   * Lines to stdout are gathered into writes of `batchBytes` (default {@link LOG_BATCH_BYTES};
   * see {@link createLogDestination}); ignored with a `destination`. For a process that logs a
   * line per call (the gateway's access log).
   */
  batch?: boolean;
  /**
   * With `batch`: the bytes gathered per write; default {@link LOG_BATCH_BYTES} (see
   * {@link LogDestinationOptions}). Ignored with a `destination` or without `batch`.
   */
  batchBytes?: number;
}

/** Bytes a batched log destination gathers before it writes (a quarter of sonic-boom's largest write). */
export const LOG_BATCH_BYTES = 4096;
/** The longest a line waits in a batched log destination before it is written. */
export const LOG_FLUSH_MS = 100;

/** A log destination from {@link createLogDestination} (sonic-boom: `flush()`, `"write"` events). */
export type LogDestination = ReturnType<typeof pino.destination>;

export interface LogDestinationOptions {
  /** A file descriptor or a file's path (appended to); default 1 (stdout). */
  dest?: number | string;
  /**
   * Gather lines into writes of at least `batchBytes` (default {@link LOG_BATCH_BYTES}), written
   * at the latest every `flushMs` and at the process's exit. Otherwise each line is written as it
   * comes (lines that come while a write is under way go together in the next).
   */
  batch?: boolean;
  /**
   * With `batch`: the bytes gathered per write, default {@link LOG_BATCH_BYTES}. A process that
   * logs a line per call at a high rate gathers more: each write costs about the same whatever
   * its size (a write is handed to libuv's thread pool, which wakes a thread), so 16 KiB instead
   * of 4 took an access line from ~4.0 to ~3.0 µs of CPU (medians of 3 runs, 300,000 lines to
   * /dev/null, issue 23). Lines still wait at most `flushMs`; a process
   * killed outright (SIGKILL) loses what is gathered, up to this many bytes. Ignored without `batch`.
   */
  batchBytes?: number;
  /** With `batch`: the longest a line waits; default {@link LOG_FLUSH_MS}. */
  flushMs?: number;
}

/** sonic-boom's largest write by default; it refuses a `minLength` that is not below its `maxWrite`. */
const SONIC_MAX_WRITE = 16 * 1024;

/**
 * The largest `batchBytes`: past some KiB a bigger batch saves nothing (a write per 16 KiB is
 * already a small share of a line's cost), while lines held in memory, the one string they are
 * joined into and the write handed to sonic-boom (`maxWrite` 4x the batch) grow without bound: a
 * batch of GiBs could not even be joined into a string.
 */
const MAX_BATCH_BYTES = 1024 * 1024;

/**
 * Where a process's log lines go: pino's asynchronous destination (sonic-boom), flushed
 * synchronously at the process's exit (`process.exit` after SIGTERM included: pino registers
 * that for every asynchronous destination). Batched, it writes once per `batchBytes` (default
 * {@link LOG_BATCH_BYTES}) instead of once per line: with an access line per call, one `write(2)`
 * per line was ~5-7% of the gateway's busy time in the bench (issue 23). A line still reaches the
 * file within `flushMs` (sonic-boom's own unref'd timer), so a quiet process's lines are not held
 * back; a process killed outright (SIGKILL) loses at most that much.
 */
export function createLogDestination(options: LogDestinationOptions = {}): LogDestination {
  const dest = options.dest ?? 1;
  if (!options.batch) return pino.destination({ dest, sync: false });
  const batchBytes = options.batchBytes ?? LOG_BATCH_BYTES;
  if (!Number.isSafeInteger(batchBytes) || batchBytes <= 0 || batchBytes > MAX_BATCH_BYTES) {
    throw new RangeError(
      `createLogDestination: batchBytes must be a positive integer up to ${MAX_BATCH_BYTES}, got ${batchBytes}`,
    );
  }
  return gatherLines(
    pino.destination({
      dest,
      sync: false,
      // Batches go to sonic-boom as bytes (see gatherLines): no string it measures and converts again.
      contentMode: "buffer",
      minLength: batchBytes,
      maxWrite: Math.max(SONIC_MAX_WRITE, 4 * batchBytes),
      periodicFlush: options.flushMs ?? LOG_FLUSH_MS,
    }),
    batchBytes,
  );
}

let lastMs = -1;
let lastTime = "";

/**
 * pino's `isoTime`, made once per millisecond: a busy process logs several lines in one (the
 * gateway's access log, a line per call), and `toISOString` was 0.7% of its busy time.
 */
export function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
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
      timestamp: isoTime,
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
    options.destination ?? createLogDestination({ batch: options.batch, batchBytes: options.batchBytes }),
  );
}
