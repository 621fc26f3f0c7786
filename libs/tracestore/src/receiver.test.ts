import { request } from "node:http";
import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { StatusSchema } from "@meshwork/contracts/google/rpc/status";
import {
  ExportTraceServiceRequestSchema,
  ExportTraceServiceResponseSchema,
} from "@meshwork/contracts/opentelemetry/proto/collector/trace/v1/trace_service";
import { waitFor } from "@meshwork/testing";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { CompressionAlgorithm } from "@opentelemetry/otlp-exporter-base";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StoredLogLine, StoredTrace, TraceSummary } from "./model.js";
import { type Receiver, startReceiver } from "./receiver.js";

let receiver: Receiver;
beforeEach(async () => {
  receiver = await startReceiver({ port: 0, maxBodyBytes: 64 * 1024 });
});
afterEach(async () => {
  await receiver.close();
});

function getJson<T>(path: string): Promise<T> {
  return fetch(`${receiver.url}${path}`).then((r) => r.json() as Promise<T>);
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTP request; `chunks` are written one by one with no content-length (chunked). */
function send(
  path: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: Uint8Array | string;
    chunks?: Buffer[];
  },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${receiver.url}${path}`,
      { method: options.method ?? "POST", headers: options.headers ?? {} },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }),
        );
      },
    );
    req.on("error", reject);
    if (options.chunks) {
      for (const c of options.chunks) req.write(c);
      req.end();
    } else {
      req.end(options.body);
    }
  });
}

/** Makes spans with a real SDK and sends them with a real exporter. */
async function exportWith(exporter: SpanExporter, service: string) {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": service, "deployment.environment": "test" }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer("receiver-test", "1.2.3");
  const root = tracer.startSpan("meshwork.orders.v1.OrderService/PlaceOrder", {
    kind: SpanKind.SERVER,
    attributes: { "rpc.system": "grpc", "order.id": "o-1", "big.count": 1099511627776, retries: 2 },
  });
  const ctx = trace.setSpan(context.active(), root);
  const child = tracer.startSpan(
    "INSERT orders",
    { kind: SpanKind.CLIENT, attributes: { "db.system": "postgresql" } },
    ctx,
  );
  child.addEvent("row written", { rows: 1 });
  child.end();
  const consumer = tracer.startSpan("process orders.placed", {
    kind: SpanKind.CONSUMER,
    links: [{ context: child.spanContext(), attributes: { "messaging.system": "nats" } }],
  });
  consumer.recordException(new Error("payment declined"));
  consumer.setStatus({ code: SpanStatusCode.ERROR, message: "payment declined" });
  consumer.end();
  root.end();
  await provider.forceFlush();
  await provider.shutdown();
  return { root: root.spanContext(), child: child.spanContext(), consumer: consumer.spanContext() };
}

describe("OTLP/HTTP receiver with the OpenTelemetry JS exporters", () => {
  for (const [encoding, make] of [
    ["JSON (exporter-trace-otlp-http)", () => new JsonExporter({ url: `${receiver.url}/v1/traces` })],
    [
      "protobuf, gzip (exporter-trace-otlp-proto)",
      () => new ProtoExporter({ url: `${receiver.url}/v1/traces`, compression: CompressionAlgorithm.GZIP }),
    ],
  ] as const) {
    it(`decodes spans sent as ${encoding}, with parents, attributes, events, links and status`, async () => {
      const ids = await exportWith(make(), "orders");
      const stored = await waitFor(() => {
        const t = receiver.traces.getTrace(ids.root.traceId);
        return t && t.spans.length === 2 ? t : undefined;
      });
      const root = stored.spans.find((s) => s.spanId === ids.root.spanId);
      const child = stored.spans.find((s) => s.spanId === ids.child.spanId);
      expect(root).toMatchObject({
        traceId: ids.root.traceId,
        spanId: ids.root.spanId,
        name: "meshwork.orders.v1.OrderService/PlaceOrder",
        kind: "server",
        service: "orders",
        attributes: { "rpc.system": "grpc", "order.id": "o-1", "big.count": 1099511627776, retries: 2 },
        resource: { "service.name": "orders", "deployment.environment": "test" },
        scope: { name: "receiver-test", version: "1.2.3" },
        status: { code: "unset" },
      });
      expect(root!.parentSpanId).toBeUndefined();
      expect(child).toMatchObject({
        spanId: ids.child.spanId,
        parentSpanId: ids.root.spanId,
        kind: "client",
        events: [{ name: "row written", attributes: { rows: 1 } }],
      });
      expect(BigInt(root!.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(child!.endTimeUnixNano));
      expect(stored.summary).toMatchObject({
        rootName: "meshwork.orders.v1.OrderService/PlaceOrder",
        services: ["orders"],
        spanCount: 2,
        complete: true,
        errorCount: 0,
      });
      // The consumer span is a trace of its own, joined to the publisher by its link.
      const consumer = receiver.traces.getTrace(ids.consumer.traceId)!.spans[0]!;
      expect(consumer).toMatchObject({
        kind: "consumer",
        status: { code: "error", message: "payment declined" },
        links: [
          {
            traceId: ids.child.traceId,
            spanId: ids.child.spanId,
            attributes: { "messaging.system": "nats" },
          },
        ],
      });
      expect(consumer.events[0]).toMatchObject({
        name: "exception",
        attributes: { "exception.message": "payment declined", "exception.type": "Error" },
      });
      expect(stored.linked?.map((s) => s.spanId)).toEqual([ids.consumer.spanId]);
    });
  }
});

/** An OTLP/JSON body written by hand the way the spec's JSON mapping has it. */
function jsonBody(spans: object[], service = "payments") {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: "service.name", value: { stringValue: service } }] },
        scopeSpans: [{ scope: { name: "hand" }, spans, someFutureField: true }],
      },
    ],
  });
}

const T = "5B8EFFF798038103D269B633813FC60C";
const S1 = "EEE19B7EC3C1B174";
const S2 = "EEE19B7EC3C1B173";

describe("OTLP/JSON mapping", () => {
  it("reads hex ids, integer enums, int64 as strings or numbers, and ignores unknown fields", async () => {
    const reply = await send("/v1/traces", {
      headers: { "content-type": "application/json; charset=utf-8" },
      body: jsonBody([
        {
          traceId: T,
          spanId: S1,
          name: "AuthorizePayment",
          kind: 2,
          startTimeUnixNano: "1544712660000000000",
          endTimeUnixNano: 1544712661000000000,
          attributes: [
            { key: "amount", value: { intValue: "12345678901234567" } },
            { key: "ok", value: { boolValue: true } },
            { key: "tags", value: { arrayValue: { values: [{ stringValue: "a" }, { doubleValue: 1.5 }] } } },
          ],
          status: { code: 2, message: "declined" },
          unknownThing: { nested: 1 },
        },
        {
          traceId: T,
          spanId: S2,
          parentSpanId: S1,
          name: "child",
          kind: 3,
          startTimeUnixNano: "1544712660500000000",
          endTimeUnixNano: "1544712660600000000",
        },
      ]),
    });
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(reply.body.toString())).toEqual({});
    const t = receiver.traces.getTrace(T.toLowerCase())!;
    expect(t.summary).toMatchObject({
      rootName: "AuthorizePayment",
      status: "error",
      errorCount: 1,
      durationMs: 1000,
    });
    expect(t.spans[0]).toMatchObject({
      spanId: S1.toLowerCase(),
      kind: "server",
      service: "payments",
      startTimeUnixNano: "1544712660000000000",
      endTimeUnixNano: "1544712661000000000",
      attributes: { amount: "12345678901234567", ok: true, tags: ["a", 1.5] },
      status: { code: "error", message: "declined" },
    });
    expect(t.spans[1]).toMatchObject({ parentSpanId: S1.toLowerCase(), kind: "client", durationMs: 100 });
  });

  it("answers a partial success naming the spans with invalid ids, in the request's encoding", async () => {
    const body = jsonBody([
      { traceId: T, spanId: S1, name: "kept", startTimeUnixNano: "1", endTimeUnixNano: "2" },
      { traceId: T, spanId: "", name: "no span id", startTimeUnixNano: "1", endTimeUnixNano: "2" },
      { traceId: "00000000000000000000000000000000", spanId: S2, name: "zero trace", startTimeUnixNano: "1" },
    ]);
    const json = await send("/v1/traces", { headers: { "content-type": "application/json" }, body });
    expect(json.status).toBe(200);
    expect(JSON.parse(json.body.toString())).toEqual({
      partialSuccess: {
        rejectedSpans: "2",
        errorMessage: 'span "no span id": span id must be 8 bytes, not all zero',
      },
    });
    // The same over protobuf: the answer is a binary ExportTraceServiceResponse.
    const msg = fromJsonBody(body);
    const proto = await send("/v1/traces", {
      headers: { "content-type": "application/x-protobuf" },
      body: toBinary(ExportTraceServiceRequestSchema, msg),
    });
    expect(proto.status).toBe(200);
    expect(proto.headers["content-type"]).toBe("application/x-protobuf");
    const res = fromBinary(ExportTraceServiceResponseSchema, proto.body);
    expect(res.partialSuccess?.rejectedSpans).toBe(2n);
    expect(receiver.traces.getTrace(T)!.spans.map((s) => s.name)).toEqual(["kept"]);
    // Every span kept, over protobuf: an empty ExportTraceServiceResponse, twice (one answer
    // encoded once and sent to both), and a partial success after them still names its spans.
    msg.resourceSpans[0]!.scopeSpans[0]!.spans.splice(1);
    for (let i = 0; i < 2; i++) {
      const ok = await send("/v1/traces", {
        headers: { "content-type": "application/x-protobuf" },
        body: toBinary(ExportTraceServiceRequestSchema, msg),
      });
      expect([ok.status, ok.headers["content-type"], ok.headers["content-length"]]).toEqual([
        200,
        "application/x-protobuf",
        "0",
      ]);
      expect(fromBinary(ExportTraceServiceResponseSchema, ok.body).partialSuccess).toBeUndefined();
    }
    const again = await send("/v1/traces", { headers: { "content-type": "application/json" }, body });
    expect(JSON.parse(again.body.toString()).partialSuccess.rejectedSpans).toBe("2");
  });
});

function fromJsonBody(body: string) {
  // Re-encode a hand-written JSON request as protobuf through the receiver's own decoder path.
  const parsed = JSON.parse(body) as {
    resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> }>;
  };
  const spans = parsed.resourceSpans[0]!.scopeSpans[0]!.spans.map((s) => ({
    name: String(s.name),
    traceId: Buffer.from(String(s.traceId), "hex"),
    spanId: Buffer.from(String(s.spanId), "hex"),
    startTimeUnixNano: BigInt(String(s.startTimeUnixNano ?? 0)),
    endTimeUnixNano: BigInt(String(s.endTimeUnixNano ?? 0)),
  }));
  return create(ExportTraceServiceRequestSchema, {
    resourceSpans: [
      {
        resource: {
          attributes: [{ key: "service.name", value: { value: { case: "stringValue", value: "payments" } } }],
        },
        scopeSpans: [{ spans }],
      },
    ],
  });
}

describe("bad requests get a precise status and a google.rpc.Status", () => {
  it("415 for another content type, 405 for another method, 404 elsewhere", async () => {
    const text = await send("/v1/traces", { headers: { "content-type": "text/plain" }, body: "hello" });
    expect(text.status).toBe(415);
    expect(JSON.parse(text.body.toString())).toMatchObject({
      code: 12,
      message: 'unsupported content type "text/plain": use application/x-protobuf or application/json',
    });
    const brotli = await send("/v1/traces", {
      headers: { "content-type": "application/json", "content-encoding": "br" },
      body: "{}",
    });
    expect(brotli.status).toBe(415);
    expect(JSON.parse(brotli.body.toString()).message).toBe(
      'unsupported content encoding "br": use gzip, deflate or none',
    );
    const get = await send("/v1/traces", { method: "GET" });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe("POST");
    expect((await send("/v2/traces", { body: "" })).status).toBe(404);
  });

  it("413 past the size limit, declared or streamed chunked, compressed or not", async () => {
    const big = Buffer.alloc(65 * 1024, " ");
    const declared = await send("/v1/traces", {
      headers: { "content-type": "application/x-protobuf", "content-length": String(big.length) },
      body: big,
    });
    expect(declared.status).toBe(413);
    const status = fromBinary(StatusSchema, declared.body);
    expect(status).toMatchObject({
      code: 8,
      message: `request body of ${big.length} bytes exceeds the limit of 65536`,
    });
    const chunked = await send("/v1/traces", {
      headers: { "content-type": "application/json" },
      chunks: [big.subarray(0, 40_000), big.subarray(40_000)],
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body.toString()).message).toBe("request body exceeds the limit of 65536 bytes");
    // A small gzip body that inflates past the limit (a zip bomb) is refused too.
    const bomb = await send("/v1/traces", {
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(Buffer.alloc(1024 * 1024, " ")),
    });
    expect(bomb.status).toBe(413);
  });

  it("reads a chunked body under the limit", async () => {
    const body = Buffer.from(jsonBody([{ traceId: T, spanId: S1, name: "chunked", startTimeUnixNano: "5" }]));
    const reply = await send("/v1/traces", {
      headers: { "content-type": "application/json" },
      chunks: [body.subarray(0, 10), body.subarray(10, 50), body.subarray(50)],
    });
    expect(reply.status).toBe(200);
    expect(receiver.traces.getTrace(T)!.spans[0]!.name).toBe("chunked");
  });

  it("400 with the decoder's message for malformed JSON, protobuf, ids and gzip", async () => {
    const cases: Array<[Record<string, string>, Uint8Array | string, string | RegExp]> = [
      [{ "content-type": "application/json" }, "{not json", /^invalid JSON: /],
      [
        { "content-type": "application/json" },
        "[1,2]",
        "invalid JSON opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest: the body must be a JSON object",
      ],
      [
        { "content-type": "application/json" },
        '{"resourceSpans": 5}',
        /^invalid JSON opentelemetry\.proto\.collector\.trace\.v1\.ExportTraceServiceRequest: /,
      ],
      [
        { "content-type": "application/json" },
        jsonBody([{ traceId: "zz", spanId: S1 }]),
        'invalid JSON: traceId "zz" is not hex',
      ],
      [
        { "content-type": "application/x-protobuf" },
        Buffer.from([0x0a, 0xff, 0xff]),
        /^invalid protobuf opentelemetry\.proto\.collector\.trace\.v1\.ExportTraceServiceRequest: /,
      ],
      [
        { "content-type": "application/json", "content-encoding": "gzip" },
        "not gzip at all",
        /^invalid gzip body: /,
      ],
    ];
    for (const [headers, body, message] of cases) {
      const reply = await send("/v1/traces", { headers, body });
      expect(reply.status, String(message)).toBe(400);
      const status =
        headers["content-type"] === "application/x-protobuf"
          ? fromBinary(StatusSchema, reply.body)
          : (JSON.parse(reply.body.toString()) as { code: number; message: string });
      expect(status.code).toBe(3);
      expect(status.message).toMatch(message);
    }
    expect(receiver.traces.stats().spans).toBe(0);
  });
});

describe("logs, metrics and the JSON API", () => {
  it("keeps OTLP log records by trace id and refuses metrics as a partial success", async () => {
    const logs = await send("/v1/logs", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        resourceLogs: [
          {
            resource: { attributes: [{ key: "service.name", value: { stringValue: "py-svc" } }] },
            scopeLogs: [
              {
                logRecords: [
                  {
                    timeUnixNano: "1700000000000000000",
                    severityText: "WARN",
                    body: { stringValue: "slow" },
                    traceId: T,
                    spanId: S1,
                  },
                ],
              },
            ],
          },
        ],
      }),
    });
    expect(logs.status).toBe(200);
    const lines = await getJson<{ lines: StoredLogLine[] }>(`/api/logs?trace_id=${T}`);
    expect(lines).toMatchObject({
      lines: [
        { timeMs: 1700000000000, service: "py-svc", level: "warn", msg: "slow", traceId: T.toLowerCase() },
      ],
    });
    const metrics = await send("/v1/metrics", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        resourceMetrics: [
          {
            scopeMetrics: [
              { metrics: [{ name: "x", gauge: { dataPoints: [{ asInt: "1" }, { asDouble: 2 }] } }] },
            ],
          },
        ],
      }),
    });
    expect(metrics.status).toBe(200);
    expect(JSON.parse(metrics.body.toString())).toMatchObject({
      partialSuccess: { rejectedDataPoints: "2" },
    });
  });

  it("lists, finds and returns traces; 404 and 400 name the problem", async () => {
    await send("/v1/traces", {
      headers: { "content-type": "application/json" },
      body: jsonBody([
        {
          traceId: T,
          spanId: S1,
          name: "PlaceOrder",
          startTimeUnixNano: "10",
          endTimeUnixNano: "20",
          attributes: [{ key: "order.id", value: { stringValue: "o-9" } }],
        },
      ]),
    });
    const list = await getJson<{ traces: TraceSummary[] }>("/api/traces?limit=5");
    expect(list.traces).toHaveLength(1);
    expect(list.traces[0]).toMatchObject({
      traceId: T.toLowerCase(),
      rootName: "PlaceOrder",
      services: ["payments"],
    });
    const found = await getJson<{ traces: TraceSummary[] }>("/api/traces?attribute=order.id%3Do-9");
    expect(found.traces.map((t) => t.traceId)).toEqual([T.toLowerCase()]);
    const none = await getJson<{ traces: TraceSummary[] }>("/api/traces?attribute=order.id%3Dother");
    expect(none.traces).toEqual([]);
    const byService = await getJson<{ traces: TraceSummary[] }>("/api/traces?service=orders");
    expect(byService.traces).toEqual([]);
    const one = await getJson<{ trace: StoredTrace }>(`/api/traces/${T}`);
    expect(one.trace.spans[0]!.name).toBe("PlaceOrder");
    const missing = await fetch(`${receiver.url}/api/traces/${"a".repeat(32)}`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: `trace ${"a".repeat(32)} is not in the store` });
    expect((await fetch(`${receiver.url}/api/traces/xyz`)).status).toBe(400);
    expect((await fetch(`${receiver.url}/api/traces?limit=0`)).status).toBe(400);
    expect((await fetch(`${receiver.url}/api/traces?attribute=novalue`)).status).toBe(400);
  });
});
