import { type Logger, pino } from "pino";
import { isoTime } from "./logger.js";

/** A pino level name a {@link LineWriter} can write at. */
export type LineLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

/**
 * Lines of one fixed shape written straight into a logger's destination, for a process that
 * logs one per call (the gateway's access log, issue 23).
 */
export interface LineWriter {
  /** Whether the logger's level lets these lines through now (it may change at run time). */
  enabled(): boolean;
  /**
   * Writes `{"level":…,"time":…,<the logger's bindings><members>,"msg":…}` and a newline, in
   * order with the logger's other lines. `members` are JSON object members, each starting with a
   * comma (`,"status":"OK"`); strings a client or a peer chose go through {@link jsonString}.
   * Checks neither the level (see {@link enabled}) nor the members.
   */
  write(members: string): void;
}

/** A string as a JSON value (quoted and escaped): for values written with a {@link LineWriter}. */
export function jsonString(value: string): string {
  return JSON.stringify(value);
}

/**
 * A {@link LineWriter} on a logger made by `createLogger`: the line is what `logger[level](obj,
 * msg)` writes for the same fields (level as its name, ISO time, the logger's bindings, `msg`
 * last), without pino's work per line: no walk over an object, no serializers, redaction or
 * hooks, no mixin (a caller that wants `trace_id`/`span_id` writes them as members, after its
 * other fields, where pino's mixin would put them first). Limits: numbers in members must be
 * finite (JSON has no NaN); the bindings are read once, so `setBindings()` later is not seen; and
 * the line goes straight to the logger's stream, so a `pino.multistream` destination, which routes
 * by the level of pino's own last write, is refused. The gateway's
 * access line cost ~10 µs through pino, about 6% of a call (issue 23); its fields are ids,
 * numbers and names that carry no secret, and `msg` is fixed, so nothing is lost by skipping the
 * scrubbing meant for free text and error objects. For other lines, use the logger.
 */
export function createLineWriter(logger: Logger, level: LineLevel, msg: string): LineWriter {
  const internals = logger as unknown as Record<symbol, unknown>;
  const stream = internals[pino.symbols.streamSym] as { write(line: string): unknown };
  if ((stream as { [key: symbol]: unknown })[pino.symbols.needsMetadataGsym]) {
    throw new Error(
      "createLineWriter: a pino.multistream destination routes by level and cannot take direct lines",
    );
  }
  // A child's bindings are fixed when it is made: `,"service":"gateway"` for the process logger.
  const bindings = internals[pino.symbols.chindingsSym] as string;
  const head = `{"level":${JSON.stringify(level)}`;
  const tail = `,"msg":${JSON.stringify(msg)}}\n`;
  return {
    enabled: () => logger.isLevelEnabled(level),
    write(members) {
      stream.write(`${head}${isoTime()}${bindings}${members}${tail}`);
    },
  };
}
