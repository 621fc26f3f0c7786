import { createLineWriter, jsonString, type LineWriter, type Logger, scrubText } from "@meshwork/telemetry";
import { trace } from "@opentelemetry/api";
import type { Protocol } from "../errors.js";

/** One access line's fields (the writer adds `service`, `level`, `time`, `msg`). */
export interface AccessEntry {
  /** The call's path: a client's choice, its query (a Connect GET's request) scrubbed. */
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
  // A query can carry a request (a Connect GET's message) and with it a token: scrubbed as
  // free text is; a path without one is a method name (or an unknown path), written as it is.
  const method = e.method.includes("?") ? scrubText(e.method) : e.method;
  let out = `,"method":${jsonString(method)},"protocol":${jsonString(e.protocol)},"status":${jsonString(e.status)}`;
  if (e.upstream !== undefined) out += `,"upstream":${jsonString(e.upstream)}`;
  out += `,"duration_ms":${e.duration_ms},"bytes_in":${e.bytes_in},"bytes_out":${e.bytes_out},"request_id":${jsonString(e.request_id)}`;
  let traceId = e.trace_id;
  let spanId = e.span_id;
  if (traceId === undefined) {
    const ids = trace.getActiveSpan()?.spanContext();
    traceId = ids?.traceId;
    spanId = ids?.spanId;
  }
  if (traceId !== undefined)
    out += `,"trace_id":${jsonString(traceId)},"span_id":${jsonString(spanId ?? "")}`;
  return out;
}

/**
 * The access log: a line per call, at `info`, written as the logger writes its own lines but
 * serialized here (issue 23: through pino, with its object walk, serializers and hooks per line,
 * it cost ~10 µs of the gateway's ~150 µs per call; this way ~5).
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
