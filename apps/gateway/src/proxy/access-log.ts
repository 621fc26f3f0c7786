import { createLineWriter, jsonString, type LineWriter, type Logger } from "@meshwork/telemetry";
import { trace } from "@opentelemetry/api";
import type { Protocol } from "../errors.js";

/** One access line's fields (the writer adds `service`, `level`, `time`, `msg`). */
export interface AccessEntry {
  /** The call's path: a client's choice; a query (a Connect GET's request) is not logged. */
  method: string;
  protocol: Protocol;
  status: string;
  upstream: string | undefined;
  duration_ms: number;
  bytes_in: number;
  bytes_out: number;
  request_id: string;
  /** The call's span; without one, the span active now (as the logger's mixin would take). */
  trace_id?: string;
  span_id?: string;
}

/** The members of an access line (see {@link createLineWriter}), in the order pino wrote them. */
export function accessMembers(e: AccessEntry): string {
  // A query can carry a request (a Connect GET's message, base64 or percent-encoded) and with it
  // a password or a token no text scrubbing can recognise: the line keeps the path and says how
  // long the query was; a path without one is a method name (or an unknown path).
  const q = e.method.indexOf("?");
  const method = q === -1 ? e.method : e.method.slice(0, q);
  let out = `,"method":${jsonString(method)}`;
  if (q !== -1) out += `,"query_bytes":${e.method.length - q - 1}`;
  out += `,"protocol":${jsonString(e.protocol)},"status":${jsonString(e.status)}`;
  if (e.upstream !== undefined) out += `,"upstream":${jsonString(e.upstream)}`;
  out += `,"duration_ms":${finite(e.duration_ms)},"bytes_in":${finite(e.bytes_in)},"bytes_out":${finite(e.bytes_out)},"request_id":${jsonString(e.request_id)}`;
  let traceId = e.trace_id;
  let spanId = e.span_id;
  if (traceId === undefined) {
    const ids = trace.getActiveSpan()?.spanContext();
    traceId = ids?.traceId;
    spanId = ids?.spanId;
  }
  if (traceId !== undefined) out += `,"trace_id":${jsonString(traceId)}`;
  if (traceId !== undefined && spanId !== undefined) out += `,"span_id":${jsonString(spanId)}`;
  return out;
}

/** A number as JSON writes it: `null` for NaN and the infinities (as pino writes them). */
function finite(n: number): string {
  return Number.isFinite(n) ? String(n) : "null";
}

/**
 * The access log: a line per call, at `info`, written as the logger writes its own lines but
 * serialized here (issue 23: through pino, with its object walk, serializers and hooks per line,
 * a line cost 9.9 µs of CPU in a micro run; this way, with the batched destination, 6.5).
 */
export class AccessLog {
  readonly #writer: LineWriter;

  constructor(logger: Logger) {
    this.#writer = createLineWriter(logger, "info", "access");
  }

  /** Whether lines are written (the logger's level allows `info`): checked before making one. */
  get enabled(): boolean {
    return this.#writer.enabled();
  }

  write(entry: AccessEntry): void {
    this.#writer.write(accessMembers(entry));
  }
}
