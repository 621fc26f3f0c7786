import {
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  type MessageShape,
} from "@bufbuild/protobuf";
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
import type { AnyValue, KeyValue } from "@meshwork/contracts/opentelemetry/proto/common/v1/common";
import {
  type Span,
  Span_SpanKind,
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
