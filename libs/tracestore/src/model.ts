/**
 * The stored form of spans, traces and log lines: plain JSON-serialisable objects, the same in
 * memory, in the HTTP JSON API and in the renderers (`meshctl trace`, the web console).
 */

/** An attribute value as OTLP's AnyValue decodes: int64 beyond 2^53 stays a decimal string. */
export type AttributeValue =
  | string
  | number
  | boolean
  | null
  | AttributeValue[]
  | { [key: string]: AttributeValue };

/** Attributes by key. */
export type Attributes = Record<string, AttributeValue>;

/** OpenTelemetry span kinds, lower case. */
export type SpanKindName = "unspecified" | "internal" | "server" | "client" | "producer" | "consumer";

/** OpenTelemetry span status codes, lower case. */
export type StatusCodeName = "unset" | "ok" | "error";

/** A span event (an exception is an event named `exception`). */
export interface StoredEvent {
  name: string;
  /** Nanoseconds since the epoch, as a decimal string (exact; JSON numbers are not). */
  timeUnixNano: string;
  attributes: Attributes;
}

/** A link to another span, e.g. from an event consumer's span to the span that published it. */
export interface StoredLink {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  attributes: Attributes;
}

/** One span as the store keeps it. */
export interface StoredSpan {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  /** Absent for a root span. */
  parentSpanId?: string;
  name: string;
  kind: SpanKindName;
  /** The resource's `service.name` (`unknown_service` when the sender set none). */
  service: string;
  /** Nanoseconds since the epoch, as a decimal string. */
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** End minus start, in milliseconds (fractional). */
  durationMs: number;
  status: { code: StatusCodeName; message?: string };
  attributes: Attributes;
  /** The resource's attributes (shared by every span of one resource in one request). */
  resource: Attributes;
  /** The instrumentation scope that made the span. */
  scope: { name: string; version?: string };
  events: StoredEvent[];
  links: StoredLink[];
}

/** What a list of traces shows per trace. */
export interface TraceSummary {
  traceId: string;
  /** The root span's name; the earliest span's when the root has not arrived (`complete` false). */
  rootName: string;
  rootService: string;
  /** False while no span without a parent has arrived. */
  complete: boolean;
  /** Every `service.name` with a span in the trace, sorted. */
  services: string[];
  spanCount: number;
  /** Earliest span start, nanoseconds since the epoch, decimal string. */
  startTimeUnixNano: string;
  /** Earliest start to latest end, in milliseconds. */
  durationMs: number;
  /** The root span's status code. */
  status: StatusCodeName;
  /** How many spans have status `error`. */
  errorCount: number;
}

/** A whole trace: its summary and its spans in start order. */
export interface StoredTrace {
  summary: TraceSummary;
  spans: StoredSpan[];
  /**
   * Spans of other traces that link to a span of this one (an event consumer that started a
   * trace of its own from a link to the publisher's span), so a drawing can join the hop.
   */
  linked?: StoredSpan[];
}

/** One log line of a process of the mesh (pino JSON, or an OTLP log record). */
export interface StoredLogLine {
  /** Milliseconds since the epoch (fractional for OTLP records). */
  timeMs: number;
  service: string;
  level: string;
  msg: string;
  traceId?: string;
  spanId?: string;
  /** The line as the process wrote it (pino JSON), or the record's body for OTLP. */
  raw: string;
}
