import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createGunzip, createInflate } from "node:zlib";
import { create, type DescMessage, type MessageShape, toBinary, toJson } from "@bufbuild/protobuf";
import { StatusSchema } from "@meshwork/contracts/google/rpc/status";
import { ExportLogsServiceResponseSchema } from "@meshwork/contracts/opentelemetry/proto/collector/logs/v1/logs_service";
import { ExportMetricsServiceResponseSchema } from "@meshwork/contracts/opentelemetry/proto/collector/metrics/v1/metrics_service";
import { ExportTraceServiceResponseSchema } from "@meshwork/contracts/opentelemetry/proto/collector/trace/v1/trace_service";
import { LogStore } from "./log-store.js";
import {
  countDataPoints,
  type DecodedSpans,
  decodeOtlp,
  type EncodedSpans,
  encodedSpansFromProtobuf,
  encodingOf,
  logLinesFromRequest,
  OtlpDecodeError,
  type OtlpEncoding,
  otlpSchemas,
  spansFromRequest,
} from "./otlp.js";
import { type AttributeQuery, TraceStore } from "./trace-store.js";

/** Options of {@link createReceiverHandler} and {@link startReceiver}. */
export interface ReceiverOptions {
  /** Where spans go (default: a new store with default limits). */
  traces?: TraceStore;
  /** Where OTLP log records go (default: a new store with default limits). */
  logs?: LogStore;
  /**
   * Largest request body accepted, in bytes, counted both as sent and after gzip is undone
   * (default 16 MiB); larger bodies get 413.
   */
  maxBodyBytes?: number;
}

/** A running receiver. */
export interface Receiver {
  /** `http://host:port`: the OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`) and the JSON API. */
  url: string;
  port: number;
  traces: TraceStore;
  logs: LogStore;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/** A failure with its HTTP status, answered as a `google.rpc.Status` in the request's encoding. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const signals = {
  "/v1/traces": "traces",
  "/v1/logs": "logs",
  "/v1/metrics": "metrics",
} as const;

/**
 * The request handler of the local OTLP/HTTP receiver and its JSON API, for mounting on a
 * server of one's own; {@link startReceiver} serves it on a port.
 *
 * - `POST /v1/traces`, `/v1/logs`, `/v1/metrics`: OTLP/HTTP export requests in either encoding
 *   (`application/x-protobuf`, `application/json`), plain, chunked or gzip/deflate-compressed.
 *   Spans go to the trace store, log records to the log store; metrics are decoded and refused
 *   as a partial success (the mesh's metrics are scraped from each process's `/metrics`).
 *   Answers follow the OTLP spec: 200 with the export response (a partial success names the
 *   rejected items and why), 400 for a malformed body, 413 over the size limit, 415 for another
 *   content type or encoding, 405 for another method; errors carry a `google.rpc.Status` in the
 *   request's encoding.
 * - `GET /api/traces?limit=&service=&attribute=key=value` (attribute repeatable, any matches):
 *   `{ traces: TraceSummary[] }`, most recent first.
 * - `GET /api/traces/<trace-id>`: `{ trace: StoredTrace }`, or 404.
 * - `GET /api/logs?trace_id=<id>`: `{ lines: StoredLogLine[] }` in time order.
 * - `GET /api/stats`: sizes and drop counts of both stores.
 */
export function createReceiverHandler(
  options: ReceiverOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const stores: Stores = {
    traces: options.traces ?? new TraceStore(),
    logs: options.logs ?? new LogStore(),
    maxBodyBytes: options.maxBodyBytes ?? 16 * 1024 * 1024,
  };
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver");
    const signal = signals[url.pathname as keyof typeof signals];
    if (signal) {
      void exportRequest(stores, signal, req, res);
      return;
    }
    if (url.pathname.startsWith("/api/")) return serveApi(stores, req, res, url);
    sendJson(res, 404, {
      error: `no such path ${url.pathname}: OTLP goes to /v1/traces, /v1/logs, /v1/metrics`,
    });
  };
}

/** What a receiver's handler keeps: its two stores and its body size limit. */
interface Stores {
  traces: TraceStore;
  logs: LogStore;
  maxBodyBytes: number;
}

/** One OTLP export request: read, decoded, stored and answered; any failure answered with its status. */
async function exportRequest(
  stores: Stores,
  signal: "traces" | "logs" | "metrics",
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const encoding = encodingOf(req.headers["content-type"]);
  try {
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      throw new HttpError(405, `${req.method} is not allowed on ${req.url}: OTLP exports are POSTed`);
    }
    if (!encoding) {
      throw new HttpError(
        415,
        `unsupported content type "${req.headers["content-type"] ?? ""}": use application/x-protobuf or application/json`,
      );
    }
    const body = await readBody(req, stores.maxBodyBytes);
    if (signal === "traces") exportTraces(stores.traces, body, encoding, res);
    else if (signal === "logs") {
      for (const line of logLinesFromRequest(decodeOtlp(otlpSchemas.logs, body, encoding)))
        stores.logs.add(line);
      respond(res, 200, encoding, ExportLogsServiceResponseSchema, {});
    } else exportMetrics(body, encoding, res);
  } catch (err) {
    const status = err instanceof HttpError ? err.status : err instanceof OtlpDecodeError ? 400 : 500;
    const message =
      err instanceof HttpError || err instanceof OtlpDecodeError ? err.message : "internal error";
    // The body of a refused request may still be arriving: close the connection after answering.
    if (!req.readableEnded) res.setHeader("connection", "close");
    respond(res, status, encoding ?? "json", StatusSchema, { code: grpcCodeFor(status), message });
    if (!req.readableEnded) req.resume();
  }
}

/** Stores the spans of a trace export and answers it, naming the spans refused and why. */
function exportTraces(
  traces: TraceStore,
  body: Uint8Array,
  encoding: OtlpEncoding,
  res: ServerResponse,
): void {
  // Protobuf spans are kept encoded until read (see encodedSpansFromProtobuf).
  const decoded =
    encoding === "protobuf"
      ? encodedSpansFromProtobuf(body)
      : spansFromRequest(decodeOtlp(otlpSchemas.traces, body, encoding));
  const added =
    encoding === "protobuf"
      ? traces.addEncoded((decoded as EncodedSpans).spans)
      : traces.add((decoded as DecodedSpans).spans);
  const rejected = decoded.rejected + added.rejected;
  const message = [
    decoded.reason,
    added.rejected
      ? `${added.rejected} spans refused: their trace exceeds the store's byte limit`
      : undefined,
  ]
    .filter(Boolean)
    .join("; ");
  if (!rejected) sendEncoded(res, 200, encoding, traceExportSuccess[encoding]);
  else
    respond(res, 200, encoding, ExportTraceServiceResponseSchema, {
      partialSuccess: { rejectedSpans: BigInt(rejected), errorMessage: message },
    });
}

/**
 * The answer to a trace export whose spans were all kept (an empty ExportTraceServiceResponse),
 * encoded once: building and encoding it per request was 1.6% of a busy receiver's CPU.
 */
const traceExportSuccess: Record<OtlpEncoding, Uint8Array> = {
  protobuf: toBinary(ExportTraceServiceResponseSchema, create(ExportTraceServiceResponseSchema)),
  json: Buffer.from(
    JSON.stringify(toJson(ExportTraceServiceResponseSchema, create(ExportTraceServiceResponseSchema))),
  ),
};

/** Decodes a metrics export and refuses its data points as a partial success. */
function exportMetrics(body: Uint8Array, encoding: OtlpEncoding, res: ServerResponse): void {
  const points = countDataPoints(decodeOtlp(otlpSchemas.metrics, body, encoding));
  respond(res, 200, encoding, ExportMetricsServiceResponseSchema, {
    ...(points
      ? {
          partialSuccess: {
            rejectedDataPoints: BigInt(points),
            errorMessage:
              "this receiver keeps traces and logs only; scrape metrics from each process's /metrics",
          },
        }
      : {}),
  });
}

/** The JSON API under `/api/` (see {@link createReceiverHandler}). */
function serveApi(stores: Stores, req: IncomingMessage, res: ServerResponse, url: URL) {
  const { traces, logs } = stores;
  if (req.method !== "GET") {
    res.setHeader("allow", "GET");
    return sendJson(res, 405, { error: `${req.method} is not allowed on ${url.pathname}` });
  }
  const q = url.searchParams;
  if (url.pathname === "/api/traces") return listTraces(traces, q, res);
  const m = /^\/api\/traces\/([^/]+)$/.exec(url.pathname);
  if (m) {
    const id = decodeURIComponent(m[1]!).toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(id)) return sendJson(res, 400, { error: "a trace id is 32 hex digits" });
    const trace = traces.getTrace(id);
    return trace
      ? sendJson(res, 200, { trace })
      : sendJson(res, 404, { error: `trace ${id} is not in the store` });
  }
  if (url.pathname === "/api/logs") {
    const id = (q.get("trace_id") ?? "").toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(id)) return sendJson(res, 400, { error: "trace_id must be 32 hex digits" });
    return sendJson(res, 200, { lines: logs.forTrace(id) });
  }
  if (url.pathname === "/api/stats")
    return sendJson(res, 200, { traces: traces.stats(), logs: logs.stats() });
  return sendJson(res, 404, { error: `no such path ${url.pathname}` });
}

/** `GET /api/traces`: the most recent traces, filtered by service and attributes. */
function listTraces(traces: TraceStore, q: URLSearchParams, res: ServerResponse) {
  const limit = q.has("limit") ? Number(q.get("limit")) : 20;
  if (!Number.isInteger(limit) || limit < 1)
    return sendJson(res, 400, { error: "limit must be a positive integer" });
  const attrs: AttributeQuery[] = [];
  for (const a of q.getAll("attribute")) {
    const i = a.indexOf("=");
    if (i <= 0) return sendJson(res, 400, { error: `attribute must be key=value, not "${a}"` });
    attrs.push({ key: a.slice(0, i), value: a.slice(i + 1) });
  }
  const service = q.get("service") ?? undefined;
  const list = attrs.length
    ? traces.findTraces({ attribute: attrs, limit: Number.MAX_SAFE_INTEGER })
    : traces.listTraces({ limit: Number.MAX_SAFE_INTEGER });
  const filtered = service ? list.filter((t) => t.services.includes(service)) : list;
  return sendJson(res, 200, { traces: filtered.slice(0, limit) });
}

/**
 * What a process needs in its environment to export its spans to the receiver at `url` (the
 * standard `OTEL_*` variables): what `meshctl up` gives every process of the mesh, and what the
 * bench's traced row gives its service.
 */
export function exporterEnv(url: string): Record<string, string> {
  return {
    OTEL_TRACES_EXPORTER: "otlp",
    OTEL_EXPORTER_OTLP_ENDPOINT: url,
    // Spans reach the store within a second instead of the SDK's default five.
    OTEL_BSP_SCHEDULE_DELAY: "1000",
  };
}

/**
 * Serves {@link createReceiverHandler} on `host:port` (default 127.0.0.1:4318, OTLP/HTTP's
 * port; 0 picks a free one). Resolves once listening.
 */
export async function startReceiver(
  options: ReceiverOptions & { host?: string; port?: number } = {},
): Promise<Receiver> {
  const traces = options.traces ?? new TraceStore();
  const logs = options.logs ?? new LogStore();
  const server: Server = createServer(createReceiverHandler({ ...options, traces, logs }));
  // Exporters keep connections open between batches: do not let them hold up close().
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 4318, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(":") ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    port,
    traces,
    logs,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Reads a request body (chunked or not, gzip or deflate or plain) up to `max` bytes. */
async function readBody(req: IncomingMessage, max: number): Promise<Uint8Array> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    throw new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${max}`);
  }
  const codings = (req.headers["content-encoding"] ?? "identity").toLowerCase().trim();
  let source: NodeJS.ReadableStream = req;
  if (codings === "gzip" || codings === "x-gzip") source = req.pipe(createGunzip());
  else if (codings === "deflate") source = req.pipe(createInflate());
  else if (codings !== "identity" && codings !== "") {
    throw new HttpError(415, `unsupported content encoding "${codings}": use gzip, deflate or none`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let wire = 0;
  if (source !== req) req.on("data", (c: Buffer) => (wire += c.length));
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max || wire > max) {
        if (source !== req) (source as unknown as { destroy(): void }).destroy();
        throw new HttpError(413, `request body exceeds the limit of ${max} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    if (source !== req) throw new OtlpDecodeError(`invalid ${codings} body: ${(err as Error).message}`);
    throw err;
  }
  return Buffer.concat(chunks);
}

function respond<Desc extends DescMessage>(
  res: ServerResponse,
  status: number,
  encoding: OtlpEncoding,
  schema: Desc,
  init: Parameters<typeof create<Desc>>[1],
): void {
  const msg = create(schema, init) as MessageShape<Desc>;
  const body =
    encoding === "protobuf" ? toBinary(schema, msg) : Buffer.from(JSON.stringify(toJson(schema, msg)));
  sendEncoded(res, status, encoding, body);
}

/** Answers with `body`, a message in `encoding`. */
function sendEncoded(res: ServerResponse, status: number, encoding: OtlpEncoding, body: Uint8Array): void {
  res.writeHead(status, {
    "content-type": encoding === "protobuf" ? "application/x-protobuf" : "application/json",
    "content-length": body.byteLength,
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { "content-type": "application/json", "content-length": body.byteLength });
  res.end(body);
}

/** The gRPC code a `google.rpc.Status` of an HTTP failure carries. */
function grpcCodeFor(status: number): number {
  if (status === 400) return 3; // INVALID_ARGUMENT
  if (status === 413) return 8; // RESOURCE_EXHAUSTED
  if (status === 415 || status === 405) return 12; // UNIMPLEMENTED
  return 13; // INTERNAL
}
