import {
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  type MessageShape,
} from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import {
  type ExportLogsServiceRequest,
  ExportLogsServiceRequestSchema,
} from "@meshwork/contracts/opentelemetry/proto/collector/logs/v1/logs_service";
import {
  type ExportMetricsServiceRequest,
  ExportMetricsServiceRequestSchema,
} from "@meshwork/contracts/opentelemetry/proto/collector/metrics/v1/metrics_service";
import {
  type ExportTraceServiceRequest,
  ExportTraceServiceRequestSchema,
} from "@meshwork/contracts/opentelemetry/proto/collector/trace/v1/trace_service";
import {
  type AnyValue,
  InstrumentationScopeSchema,
  type KeyValue,
} from "@meshwork/contracts/opentelemetry/proto/common/v1/common";
import { ResourceSchema } from "@meshwork/contracts/opentelemetry/proto/resource/v1/resource";
import {
  type Span,
  Span_SpanKind,
  SpanSchema,
  Status_StatusCode,
} from "@meshwork/contracts/opentelemetry/proto/trace/v1/trace";
import type { Attributes, AttributeValue, SpanKindName, StoredLogLine, StoredSpan } from "./model.js";

/** The two OTLP/HTTP encodings. */
export type OtlpEncoding = "protobuf" | "json";

/** A request body that is not a valid OTLP message of its encoding. */
export class OtlpDecodeError extends Error {
  override readonly name = "OtlpDecodeError";
}

/**
 * The encoding a `Content-Type` names, or undefined for any other type. OTLP/HTTP defines
 * `application/x-protobuf` and `application/json`; parameters such as `charset` are ignored.
 */
export function encodingOf(contentType: string | undefined): OtlpEncoding | undefined {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "application/x-protobuf" || type === "application/protobuf") return "protobuf";
  if (type === "application/json") return "json";
  return undefined;
}

/**
 * Decodes an OTLP export request body. JSON follows the OTLP/JSON mapping: the proto3 JSON
 * mapping with lowerCamelCase keys, enums as integers (names are accepted too), 64-bit integers
 * as strings or numbers, unknown fields ignored, and trace and span ids as hex (not base64).
 *
 * @throws OtlpDecodeError with what is wrong when the body is not a valid message.
 */
export function decodeOtlp<Desc extends DescMessage>(
  schema: Desc,
  body: Uint8Array,
  encoding: OtlpEncoding,
): MessageShape<Desc> {
  if (encoding === "protobuf") {
    try {
      return fromBinary(schema, body);
    } catch (err) {
      throw new OtlpDecodeError(`invalid protobuf ${schema.typeName}: ${(err as Error).message}`);
    }
  }
  let json: JsonValue;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body)) as JsonValue;
  } catch (err) {
    throw new OtlpDecodeError(`invalid JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new OtlpDecodeError(`invalid JSON ${schema.typeName}: the body must be a JSON object`);
  }
  const rewritten = hexIdsToBase64(json);
  try {
    return fromJson(schema, rewritten, { ignoreUnknownFields: true });
  } catch (err) {
    throw new OtlpDecodeError(`invalid JSON ${schema.typeName}: ${(err as Error).message}`);
  }
}

/** The request schemas of the three OTLP signals. */
export const otlpSchemas = {
  traces: ExportTraceServiceRequestSchema,
  logs: ExportLogsServiceRequestSchema,
  metrics: ExportMetricsServiceRequestSchema,
} as const;

const idKeys = new Set(["traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"]);

/**
 * OTLP/JSON writes trace and span ids as hex where the proto3 JSON mapping has base64: rewrite
 * them so the generic JSON decoder reads them. Only message fields carry these keys (attribute
 * keys are values of `key`, never object keys), so a walk over every object is exact. A value
 * that is not hex makes the body invalid.
 */
function hexIdsToBase64(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(hexIdsToBase64);
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, JsonValue> = {};
  for (const [k, x] of Object.entries(v)) {
    if (idKeys.has(k) && typeof x === "string") {
      if (!/^(?:[0-9a-fA-F]{2})*$/.test(x)) {
        throw new OtlpDecodeError(`invalid JSON: ${k} ${JSON.stringify(x.slice(0, 40))} is not hex`);
      }
      out[k] = Buffer.from(x, "hex").toString("base64");
    } else {
      out[k] = hexIdsToBase64(x);
    }
  }
  return out;
}

/** Spans of an export request in the stored form, and the spans that could not be kept. */
export interface DecodedSpans {
  spans: StoredSpan[];
  /** Spans with an invalid trace or span id. */
  rejected: number;
  /** Why the first rejected span was rejected. */
  reason?: string;
}

/** Turns an export request into stored spans, rejecting those whose ids are invalid. */
export function spansFromRequest(req: ExportTraceServiceRequest): DecodedSpans {
  const spans: StoredSpan[] = [];
  let rejected = 0;
  let reason: string | undefined;
  for (const rs of req.resourceSpans) {
    const resource = attributesOf(rs.resource?.attributes ?? []);
    const serviceName = resource["service.name"];
    const service = typeof serviceName === "string" && serviceName ? serviceName : "unknown_service";
    for (const ss of rs.scopeSpans) {
      const scope = {
        name: ss.scope?.name ?? "",
        ...(ss.scope?.version ? { version: ss.scope.version } : {}),
      };
      for (const s of ss.spans) {
        const problem = invalidIds(s);
        if (problem) {
          rejected++;
          reason ??= problem;
          continue;
        }
        spans.push(storedSpan(s, service, resource, scope));
      }
    }
  }
  return reason === undefined ? { spans, rejected } : { spans, rejected, reason };
}

function invalidIds(s: Span): string | undefined {
  if (s.traceId.length !== 16 || s.traceId.every((b) => b === 0))
    return `span "${s.name}": trace id must be 16 bytes, not all zero`;
  if (s.spanId.length !== 8 || s.spanId.every((b) => b === 0))
    return `span "${s.name}": span id must be 8 bytes, not all zero`;
  if (s.parentSpanId.length !== 0 && s.parentSpanId.length !== 8)
    return `span "${s.name}": parent span id must be empty or 8 bytes`;
  return undefined;
}

const kinds: Record<Span_SpanKind, SpanKindName> = {
  [Span_SpanKind.UNSPECIFIED]: "unspecified",
  [Span_SpanKind.INTERNAL]: "internal",
  [Span_SpanKind.SERVER]: "server",
  [Span_SpanKind.CLIENT]: "client",
  [Span_SpanKind.PRODUCER]: "producer",
  [Span_SpanKind.CONSUMER]: "consumer",
};

function storedSpan(s: Span, service: string, resource: Attributes, scope: StoredSpan["scope"]): StoredSpan {
  const code = s.status?.code ?? Status_StatusCode.UNSET;
  // A span that ends before it starts (clock skew inside a sender) is drawn with no length.
  let end = s.endTimeUnixNano;
  if (end < s.startTimeUnixNano) end = s.startTimeUnixNano;
  const parent = hex(s.parentSpanId);
  return {
    traceId: hex(s.traceId),
    spanId: hex(s.spanId),
    ...(parent && !/^0+$/.test(parent) ? { parentSpanId: parent } : {}),
    name: s.name,
    kind: kinds[s.kind] ?? "unspecified",
    service,
    startTimeUnixNano: String(s.startTimeUnixNano),
    endTimeUnixNano: String(end),
    durationMs: Number(end - s.startTimeUnixNano) / 1e6,
    status: {
      code: code === Status_StatusCode.ERROR ? "error" : code === Status_StatusCode.OK ? "ok" : "unset",
      ...(s.status?.message ? { message: s.status.message } : {}),
    },
    attributes: attributesOf(s.attributes),
    resource,
    scope,
    events: s.events.map((e) => ({
      name: e.name,
      timeUnixNano: String(e.timeUnixNano),
      attributes: attributesOf(e.attributes),
    })),
    links: s.links
      .filter((l) => l.traceId.length === 16 && l.spanId.length === 8)
      .map((l) => ({
        traceId: hex(l.traceId),
        spanId: hex(l.spanId),
        attributes: attributesOf(l.attributes),
      })),
  };
}

/** OTLP's key-value list as a plain object (a repeated key keeps its last value). */
export function attributesOf(list: readonly KeyValue[]): Attributes {
  const out: Attributes = {};
  for (const kv of list) out[kv.key] = anyValue(kv.value);
  return out;
}

function anyValue(v: AnyValue | undefined): AttributeValue {
  const x = v?.value;
  switch (x?.case) {
    case "stringValue":
    case "boolValue":
    case "doubleValue":
      return x.value;
    case "intValue":
      return x.value >= BigInt(Number.MIN_SAFE_INTEGER) && x.value <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(x.value)
        : String(x.value);
    case "arrayValue":
      return x.value.values.map(anyValue);
    case "kvlistValue":
      return attributesOf(x.value.values);
    case "bytesValue":
      return Buffer.from(x.value).toString("base64");
    default:
      return null;
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** Log records of an export request as log lines (records without a trace id included). */
export function logLinesFromRequest(req: ExportLogsServiceRequest): StoredLogLine[] {
  const out: StoredLogLine[] = [];
  for (const rl of req.resourceLogs) {
    const resource = attributesOf(rl.resource?.attributes ?? []);
    const service =
      typeof resource["service.name"] === "string" ? resource["service.name"] : "unknown_service";
    for (const sl of rl.scopeLogs) {
      for (const r of sl.logRecords) {
        const nanos = r.timeUnixNano || r.observedTimeUnixNano;
        const body = anyValue(r.body);
        const msg = typeof body === "string" ? body : JSON.stringify(body);
        const traceId = r.traceId.length === 16 ? hex(r.traceId) : undefined;
        const spanId = r.spanId.length === 8 ? hex(r.spanId) : undefined;
        out.push({
          timeMs: Number(nanos / 1000n) / 1000,
          service,
          level: (r.severityText || "info").toLowerCase(),
          msg,
          ...(traceId ? { traceId } : {}),
          ...(spanId ? { spanId } : {}),
          raw: JSON.stringify({ ...attributesOf(r.attributes), msg }),
        });
      }
    }
  }
  return out;
}

/** How many data points an export request of metrics carries. */
export function countDataPoints(req: ExportMetricsServiceRequest): number {
  let n = 0;
  for (const rm of req.resourceMetrics)
    for (const sm of rm.scopeMetrics)
      for (const m of sm.metrics) {
        const d = m.data;
        if (d.case !== undefined) n += d.value.dataPoints.length;
      }
  return n;
}

/** What the spans of one resource and scope in one export request share. */
export interface SpanOrigin {
  /** The resource's `service.name` (`unknown_service` when the sender set none). */
  service: string;
  resource: Attributes;
  scope: StoredSpan["scope"];
  /** The encoded resource's size, counted with each span against the store's byte limit. */
  resourceBytes: number;
}

/**
 * One span of a protobuf export request, kept as the sender encoded it: the ids the store
 * indexes it by, the targets of its links (to join traces on read) and its bytes, decoded into a
 * {@link StoredSpan} only when read ({@link decodeEncodedSpan}).
 */
export interface EncodedSpan {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  /**
   * The span's own encoding (`opentelemetry.proto.trace.v1.Span`), copied out of the request: a
   * view of a piece of at most 8 KiB it shares with the spans next to it (see `copyIntoPieces`),
   * made when read.
   */
  readonly bytes: Uint8Array;
  /** The length of {@link bytes}, without making the view. */
  readonly size: number;
  origin: SpanOrigin;
  /** The spans its links point to; absent or undefined when it has none. */
  links?: { traceId: string; spanId: string }[] | undefined;
}

/**
 * An {@link EncodedSpan} as the walk makes it: its bytes a range of a piece (the request body,
 * until `copyIntoPieces` gives it its piece), with no view object of its own while it is kept.
 */
class SpanInPiece implements EncodedSpan {
  constructor(
    readonly traceId: string,
    readonly spanId: string,
    public piece: Buffer,
    public start: number,
    public end: number,
    readonly origin: SpanOrigin,
    readonly links: EncodedSpan["links"],
  ) {}

  get bytes(): Uint8Array {
    return this.piece.subarray(this.start, this.end);
  }

  get size(): number {
    return this.end - this.start;
  }
}

/** The largest piece spans' bytes are copied into together (as Node's Buffer pool's slabs). */
const PIECE_BYTES = 8 * 1024;

/**
 * Copies the bytes of `spans[from..]` (in request order, each a range of `body`) out of the
 * request into pieces of at most {@link PIECE_BYTES} (a larger span gets one of its own), one
 * copy and one ArrayBuffer per piece rather than per span, and points each span at its piece.
 * A copy: a view would keep the whole request alive for as long as any of its spans; a piece is
 * kept alive by any of its spans, at most 8 KiB per span kept, as a Buffer from Node's pool keeps
 * its slab. (The copy per span before cost a temporary view per span, and a Buffer object per
 * span kept; an ArrayBuffer per span, earlier, was most of the receiver's GC.)
 */
function copyIntoPieces(body: Buffer, spans: SpanInPiece[], from: number): void {
  let i = from;
  while (i < spans.length) {
    const start = (spans[i] as SpanInPiece).start;
    let j = i + 1;
    while (j < spans.length && (spans[j] as SpanInPiece).end - start <= PIECE_BYTES) j++;
    const end = (spans[j - 1] as SpanInPiece).end;
    const piece = Buffer.allocUnsafeSlow(end - start);
    body.copy(piece, 0, start, end);
    for (; i < j; i++) {
      const span = spans[i] as SpanInPiece;
      span.piece = piece;
      span.start -= start;
      span.end -= start;
    }
  }
}

/** Encoded spans of a protobuf export request, and the spans that could not be kept. */
export interface EncodedSpans {
  spans: EncodedSpan[];
  /** Spans with an invalid trace or span id. */
  rejected: number;
  /** Why the first rejected span was rejected. */
  reason?: string;
}

/**
 * Reads a protobuf `ExportTraceServiceRequest` without decoding its spans: the request's
 * structure (every resource, scope and span, and each span's own fields) is walked with
 * protobuf-es's `BinaryReader`, resources and scopes are decoded (once per group), and each span
 * keeps its ids, its links' targets and a copy of its bytes. The store decodes a span when it is
 * read; most spans of a busy mesh are dropped, unread, when newer traces push them out.
 *
 * Why not `fromBinary` of the whole request: in the bench's traced row (`npm run bench`, the
 * receiver in the bench process on a shared 2-core machine) decoding every span into objects,
 * converting it to the stored form and sizing it as JSON cost about 60 us of CPU per span, more
 * than the traced service spent serving the call (47 us), and 38% of the receiver's process time
 * was GC. Walking the bytes keeps the structural checks (a truncated or malformed body is still
 * a 400) and leaves nested values (attributes, events) to be decoded on read.
 *
 * @throws OtlpDecodeError with what is wrong when the body is not a valid message.
 */
export function encodedSpansFromProtobuf(bytes: Uint8Array): EncodedSpans {
  const body = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const spans: SpanInPiece[] = [];
  let rejected = 0;
  let reason: string | undefined;
  const reader = new BinaryReader(body);
  try {
    forEachField(reader, body.length, (field, wireType) => {
      if (field !== 1 || wireType !== WireType.LengthDelimited) return false;
      // ResourceSpans: the resource comes first in every encoder's output, but the wire format
      // does not promise it, so the scope groups are read once the resource is known.
      const end = messageEnd(reader);
      const { head: resourceBytes, parts: scopes } = headAndParts(reader, end);
      const resource = attributesOf(fromBinary(ResourceSchema, resourceBytes).attributes);
      const serviceName = resource["service.name"];
      const service = typeof serviceName === "string" && serviceName ? serviceName : "unknown_service";
      for (let g = 0; g < scopes.length; g += 2) {
        reader.pos = scopes[g] as number;
        const { head: scopeBytes, parts: spanRanges } = headAndParts(reader, scopes[g + 1] as number);
        const s = fromBinary(InstrumentationScopeSchema, scopeBytes);
        const origin: SpanOrigin = {
          service,
          resource,
          scope: { name: s.name, ...(s.version ? { version: s.version } : {}) },
          resourceBytes: resourceBytes.length,
        };
        const first = spans.length;
        for (let i = 0; i < spanRanges.length; i += 2) {
          const span = encodedSpan(
            reader,
            body,
            spanRanges[i] as number,
            spanRanges[i + 1] as number,
            origin,
          );
          if (typeof span === "string") {
            rejected++;
            reason ??= span;
          } else spans.push(span);
        }
        copyIntoPieces(body, spans, first);
      }
      reader.pos = end;
      return true;
    });
  } catch (err) {
    throw new OtlpDecodeError(
      `invalid protobuf ${ExportTraceServiceRequestSchema.typeName}: ${(err as Error).message}`,
    );
  }
  return reason === undefined ? { spans, rejected } : { spans, rejected, reason };
}

const EMPTY = new Uint8Array(0);

/**
 * Calls `read` for each field up to `end`; `read` consumes the field's value and returns true,
 * or returns false to have it skipped.
 */
function forEachField(
  reader: BinaryReader,
  end: number,
  read: (field: number, wireType: WireType) => boolean,
): void {
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (!read(field, wireType)) reader.skip(wireType, field);
  }
  if (reader.pos !== end) throw new Error("premature end of a nested message");
}

/**
 * Reads a message up to `end` shaped as ResourceSpans and ScopeSpans are: field 1 one message
 * (its bytes, `head`), field 2 a repeated message (where each is, not read yet: `parts` holds
 * each one's start and end in turn, flat, rather than a pair per span); other fields are skipped.
 */
function headAndParts(reader: BinaryReader, end: number): { head: Uint8Array; parts: number[] } {
  let head: Uint8Array = EMPTY;
  const parts: number[] = [];
  forEachField(reader, end, (field, wireType) => {
    if (wireType !== WireType.LengthDelimited) return false;
    if (field === 1) head = reader.bytes();
    else if (field === 2) {
      const partEnd = messageEnd(reader);
      parts.push(reader.pos, partEnd);
      reader.pos = partEnd;
    } else return false;
    return true;
  });
  return { head, parts };
}

/** Reads a length prefix and returns where the nested message ends. */
function messageEnd(reader: BinaryReader): number {
  const len = reader.uint32();
  const end = reader.pos + len;
  if (end > reader.len) throw new Error("premature EOF");
  return end;
}

/**
 * One span's ids, links and bytes, or why its ids are invalid. The span's own fields are walked
 * by position, with no closure, tuple or view per field: this runs once per span received.
 */
function encodedSpan(
  reader: BinaryReader,
  body: Buffer,
  start: number,
  end: number,
  origin: SpanOrigin,
): SpanInPiece | string {
  reader.pos = start;
  let traceAt = 0;
  let traceLength = 0;
  let spanAt = 0;
  let spanLength = 0;
  let parentLength = 0;
  let links: EncodedSpan["links"];
  while (reader.pos < end) {
    const tag = readTag(reader);
    const field = tag >>> 3;
    if ((tag & 7) !== WireType.LengthDelimited) {
      skipScalar(reader, body, tag);
      continue;
    }
    const length = reader.uint32();
    const at = reader.pos;
    reader.pos += length;
    if (reader.pos > end) throw new Error("premature end of a nested message");
    if (field === 1) {
      traceAt = at;
      traceLength = length;
    } else if (field === 2) {
      spanAt = at;
      spanLength = length;
    } else if (field === 4) parentLength = length;
    else if (field === 13) {
      const link = linkTarget(reader, body, at, at + length);
      if (link) {
        links ??= [];
        links.push(link);
      }
    }
  }
  if (reader.pos !== end) throw new Error("premature end of a nested message");
  if (
    traceLength !== 16 ||
    allZero(body, traceAt, traceLength) ||
    spanLength !== 8 ||
    allZero(body, spanAt, spanLength) ||
    (parentLength !== 0 && parentLength !== 8)
  ) {
    return invalidIds(fromBinary(SpanSchema, body.subarray(start, end))) as string;
  }
  const traceId = body.toString("hex", traceAt, traceAt + 16);
  const spanId = body.toString("hex", spanAt, spanAt + 8);
  // Still a range of the request: copyIntoPieces copies it out once its group is walked.
  return new SpanInPiece(traceId, spanId, body, start, end, origin, links);
}

/** A link's target, when its ids are well formed (as in the decoded form, others are left out). */
function linkTarget(
  reader: BinaryReader,
  body: Buffer,
  start: number,
  end: number,
): { traceId: string; spanId: string } | undefined {
  const after = reader.pos;
  reader.pos = start;
  let traceAt = -1;
  let spanAt = -1;
  while (reader.pos < end) {
    const tag = readTag(reader);
    if ((tag & 7) !== WireType.LengthDelimited) {
      skipScalar(reader, body, tag);
      continue;
    }
    const length = reader.uint32();
    const at = reader.pos;
    reader.pos += length;
    if (reader.pos > end) throw new Error("premature end of a nested message");
    if (tag >>> 3 === 1) traceAt = length === 16 ? at : -1;
    else if (tag >>> 3 === 2) spanAt = length === 8 ? at : -1;
  }
  if (reader.pos !== end) throw new Error("premature end of a nested message");
  reader.pos = after;
  if (traceAt < 0 || spanAt < 0) return undefined;
  return {
    traceId: body.toString("hex", traceAt, traceAt + 16),
    spanId: body.toString("hex", spanAt, spanAt + 8),
  };
}

/** A tag, checked as protobuf-es's `BinaryReader.tag()` checks it, without the tuple. */
function readTag(reader: BinaryReader): number {
  const tag = reader.uint32();
  if (tag >>> 3 === 0 || (tag & 7) > 5)
    throw new Error(`illegal tag: field no ${tag >>> 3} wire type ${tag & 7}`);
  return tag;
}

/** Skips a field that is not length-delimited. */
function skipScalar(reader: BinaryReader, body: Uint8Array, tag: number): void {
  const wireType = tag & 7;
  if (wireType === WireType.Varint) {
    while (body[reader.pos++]! & 0x80) {
      // continuation bytes
    }
  } else if (wireType === WireType.Bit64) reader.pos += 8;
  else if (wireType === WireType.Bit32) reader.pos += 4;
  else reader.skip(wireType, tag >>> 3); // groups (deprecated) and what it refuses
  if (reader.pos > body.length) throw new Error("premature EOF");
}

function allZero(body: Uint8Array, at: number, length: number): boolean {
  for (let i = at; i < at + length; i++) if (body[i] !== 0) return false;
  return true;
}

/**
 * The stored form of an encoded span. A span whose nested values do not decode (the walk on
 * arrival checks its fields, not what they hold) is shown with its ids, an error status and
 * the decoder's message rather than thrown away.
 */
export function decodeEncodedSpan(span: EncodedSpan): StoredSpan {
  const { service, resource, scope } = span.origin;
  try {
    return storedSpan(fromBinary(SpanSchema, span.bytes), service, resource, scope);
  } catch (err) {
    return {
      traceId: span.traceId,
      spanId: span.spanId,
      name: "(undecodable span)",
      kind: "unspecified",
      service,
      startTimeUnixNano: "0",
      endTimeUnixNano: "0",
      durationMs: 0,
      status: { code: "error", message: `invalid protobuf span: ${(err as Error).message}` },
      attributes: {},
      resource,
      scope,
      events: [],
      links: [],
    };
  }
}
