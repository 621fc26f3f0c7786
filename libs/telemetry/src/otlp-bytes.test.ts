import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { ExportTraceServiceRequestSchema } from "@meshwork/contracts/opentelemetry/proto/collector/trace/v1/trace_service";
import { waitFor } from "@meshwork/testing";
import {
  type Attributes,
  type AttributeValue,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { TraceState } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LeanSpan, leanSpanStarter } from "./lean-span.js";
import { spanProcessorsFor } from "./otel-env.js";
import { batchLimitsFromEnv, OtlpBytesSpanProcessor } from "./otlp-bytes-processor.js";
import { OtlpWriter } from "./otlp-writer.js";
import { createTelemetry } from "./telemetry.js";

/** An OTLP/HTTP sink keeping every request body; `status` answers (then 200). */
interface Sink {
  url: string;
  bodies: Buffer[];
  answers: number[];
  server: Server;
}
let sink: Sink;
beforeEach(async () => {
  const bodies: Buffer[] = [];
  const answers: number[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const status = answers.shift() ?? 200;
      if (status === 200) bodies.push(Buffer.concat(parts));
      res.writeHead(status, { "content-type": "application/x-protobuf", "retry-after": "0" });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  sink = { url: `http://127.0.0.1:${port}/v1/traces`, bodies, answers, server };
});
afterEach(async () => {
  sink.server.closeAllConnections();
  await new Promise((resolve) => sink.server.close(resolve));
});

const decode = (body: Buffer) =>
  toJson(ExportTraceServiceRequestSchema, fromBinary(ExportTraceServiceRequestSchema, body));

/** Spans of two scopes with every kind of content the OTLP Span message carries. */
function makeSpans(): ReadableSpan[] {
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "orders", "deployment.environment": "test", pid: 42 }),
    spanLimits: { attributeCountLimit: 12, eventCountLimit: 2 },
    spanProcessors: [new SimpleSpanProcessor(memory)],
  });
  const tracer = provider.getTracer("otlp-bytes-test", "1.2.3");
  const lean = leanSpanStarter(tracer);
  if (!lean) throw new Error("the SDK's tracer was not recognised");
  const parent = trace.setSpanContext(ROOT_CONTEXT, {
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    traceFlags: 1,
    isRemote: true,
    traceState: new TraceState("vendor=a1,other=b2"),
  });
  const attrs: Attributes = Object.freeze({
    "rpc.system": "grpc",
    "rpc.service": "o.v1.O",
    "rpc.method": "Place",
  });
  const server = lean("o.v1.O/Place", SpanKind.SERVER, attrs, parent);
  server.setAttribute("rpc.grpc.status_code", 13);
  server.setStatus({ code: SpanStatusCode.ERROR, message: "stock döwn: ✗" });
  server.recordException(new Error("boom"));
  const child = tracer.startSpan(
    "INSERT orders",
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "db.system": "postgresql",
        int: 7,
        negative: -3,
        big: 2 ** 60,
        double: 1.5,
        yes: true,
        list: ["a", "b"],
        numbers: [1, 2.5],
        long: "x".repeat(300),
        ünïcode: "värde",
      },
      links: [
        {
          context: { traceId: "1".repeat(32), spanId: "2".repeat(16), traceFlags: 0, isRemote: true },
          attributes: { "messaging.system": "nats" },
        },
      ],
    },
    trace.setSpan(parent, server),
  );
  for (let i = 0; i < 4; i++) child.addEvent(`event ${i}`, { i });
  for (let i = 0; i < 8; i++) child.setAttribute(`extra.${i}`, i);
  child.setStatus({ code: SpanStatusCode.OK });
  child.end();
  server.end();
  const other = provider.getTracer("other-scope").startSpan("internal work");
  other.end();
  return memory.getFinishedSpans();
}

describe("OtlpBytesSpanProcessor", () => {
  it("exports what the SDK's OTLP/protobuf exporter exports, decoded field by field", async () => {
    const spans = makeSpans();
    expect(spans).toHaveLength(3);
    const sdk = new OTLPTraceExporter({ url: sink.url });
    await new Promise<void>((resolve, reject) =>
      sdk.export(spans, (r) => (r.code === 0 ? resolve() : reject(r.error))),
    );
    const lean = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: {},
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({}),
    });
    for (const span of spans) lean.onEnd(span);
    await lean.forceFlush();
    await lean.shutdown();
    await sdk.shutdown();
    expect(sink.bodies).toHaveLength(2);
    const [fromSdk, fromLean] = sink.bodies.map((b) => decode(b as Buffer));
    expect(fromLean).toEqual(fromSdk);
    // And the content is what was recorded (not two equally wrong encodings).
    const json = JSON.stringify(fromLean);
    for (const text of [
      "stock döwn: ✗",
      "vendor=a1,other=b2",
      "ünïcode",
      "exception",
      "otlp-bytes-test",
      "other-scope",
    ]) {
      expect(json).toContain(text);
    }
  });

  it("writes a route's lean spans from bytes encoded once, each with its own ids, times and attributes", async () => {
    const memory = new InMemorySpanExporter();
    // Encoded when each span ends, as in a service: before anything reads `span.attributes`.
    const bytes = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: {},
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({}),
    });
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory), bytes] });
    const lean = leanSpanStarter(provider.getTracer("route-test"));
    if (!lean) throw new Error("the SDK's tracer was not recognised");
    const route: Attributes = Object.freeze({
      "rpc.system": "grpc",
      "rpc.service": "u.v1.U",
      "rpc.method": "Get",
    });
    const plain: Attributes = { "rpc.system": "grpc", "rpc.method": "Get" };
    const made = [
      lean("u.v1.U/Get", SpanKind.SERVER, route, ROOT_CONTEXT),
      lean("u.v1.U/Get", SpanKind.SERVER, route, ROOT_CONTEXT),
      lean("u.v1.U/Get", SpanKind.SERVER, route, ROOT_CONTEXT), // a start attribute replaced
      lean("u.v1.U/Get", SpanKind.SERVER, route, ROOT_CONTEXT), // renamed
      lean("u.v1.U/Get", SpanKind.CLIENT, route, ROOT_CONTEXT), // another kind, same attributes
      lean("u.v1.U/Get", SpanKind.SERVER, plain, ROOT_CONTEXT), // not frozen: no template
      lean("u.v1.U/Get", SpanKind.SERVER, {}, ROOT_CONTEXT),
    ];
    made[0]?.setAttribute("rpc.grpc.status_code", 0);
    made[1]?.setAttributes({ "rpc.grpc.status_code": 5, note: "ünï" });
    made[2]?.setAttribute("rpc.method", "Got").setAttribute("rpc.grpc.status_code", 2);
    made[3]?.updateName("u.v1.U/Renamed");
    made[5]?.setAttribute("rpc.grpc.status_code", 1);
    made[6]?.setAttribute("only.own", true);
    for (const [i, span] of made.entries()) span.end(Date.now() + i + 0.123456);
    // Encoded from the route's bytes: nothing read the attributes, which were not merged.
    expect((made[1] as LeanSpan).baseAttributes).toBe(route);
    // The start attributes stay shared: setting the status code copied nothing.
    expect(made[0]).toBeInstanceOf(LeanSpan);
    expect((made[0] as LeanSpan).baseAttributes).toBe(route);
    expect(made[0] && (made[0] as LeanSpan).attributes).toEqual({ ...route, "rpc.grpc.status_code": 0 });
    const spans = memory.getFinishedSpans();
    expect(spans).toHaveLength(made.length);
    await bytes.forceFlush();
    const sdk = new OTLPTraceExporter({ url: sink.url });
    await new Promise<void>((resolve, reject) =>
      sdk.export(spans, (r) => (r.code === 0 ? resolve() : reject(r.error))),
    );
    await bytes.shutdown();
    await sdk.shutdown();
    const [fromLean, fromSdk] = sink.bodies.map((b) => decode(b as Buffer));
    expect(fromLean).toEqual(fromSdk);
    const json = JSON.stringify(fromLean);
    for (const text of ["u.v1.U/Renamed", "Got", "ünï", "only.own", "SPAN_KIND_CLIENT"])
      expect(json).toContain(text);
  });

  it("exports what a processor changed in a lean span's attributes before the exporter, as with the SDK's span", async () => {
    const bytes = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: {},
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({}),
    });
    const redact: SpanProcessor = {
      onStart: () => {},
      onEnd: (span) => {
        const attributes = span.attributes as Record<string, AttributeValue>;
        if (attributes["rpc.method"] !== undefined) attributes["rpc.method"] = "REDACTED";
        if (attributes.token !== undefined) attributes.token = "***";
      },
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    const provider = new BasicTracerProvider({ spanProcessors: [redact, bytes] });
    const tracer = provider.getTracer("redact-test");
    const lean = leanSpanStarter(tracer);
    if (!lean) throw new Error("the SDK's tracer was not recognised");
    const route: Attributes = Object.freeze({ "rpc.system": "grpc", "rpc.method": "Login" });
    for (const span of [
      lean("a.v1.A/Login", SpanKind.SERVER, route, ROOT_CONTEXT),
      tracer.startSpan("a.v1.A/Login", { kind: SpanKind.SERVER, attributes: route }, ROOT_CONTEXT),
    ]) {
      span.setAttribute("token", "s3cr3t-value");
      span.setAttribute("rpc.grpc.status_code", 0);
      span.end();
    }
    await bytes.shutdown();
    const request = fromBinary(ExportTraceServiceRequestSchema, sink.bodies[0] as Buffer);
    const spans = request.resourceSpans[0]?.scopeSpans[0]?.spans ?? [];
    expect(spans).toHaveLength(2);
    for (const span of spans) {
      expect(span.attributes.map((a) => [a.key, a.value?.value.value])).toEqual([
        ["rpc.system", "grpc"],
        ["rpc.method", "REDACTED"],
        ["token", "***"],
        ["rpc.grpc.status_code", 0n],
      ]);
    }
  });

  it("writes an array of a route's frozen start attributes as it is when the span ends, not as it was first", async () => {
    const bytes = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: {},
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({}),
    });
    const provider = new BasicTracerProvider({ spanProcessors: [bytes] });
    const lean = leanSpanStarter(provider.getTracer("array-test"));
    if (!lean) throw new Error("the SDK's tracer was not recognised");
    const tags = ["blue", "green"];
    const route: Attributes = Object.freeze({ "rpc.method": "Get", tags }); // the array is not frozen
    for (const tag of ["blue", "red"]) {
      tags[0] = tag;
      const span = lean("a.v1.A/Get", SpanKind.SERVER, route, ROOT_CONTEXT);
      span.setAttribute("rpc.grpc.status_code", 0);
      span.end();
    }
    await bytes.shutdown();
    const request = fromBinary(ExportTraceServiceRequestSchema, sink.bodies[0] as Buffer);
    const spans = request.resourceSpans[0]?.scopeSpans[0]?.spans ?? [];
    const firstTags = spans.map((s) => {
      const value = s.attributes.find((a) => a.key === "tags")?.value?.value;
      return value?.case === "arrayValue" ? value.value.values[0]?.value.value : undefined;
    });
    expect(firstTags).toEqual(["blue", "red"]);
  });

  it("batches by OTEL_BSP_MAX_EXPORT_BATCH_SIZE, one request per batch with the resource once", async () => {
    const spans = makeSpans();
    const lean = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: {},
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({ OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "4", OTEL_BSP_SCHEDULE_DELAY: "60000" }),
    });
    for (let i = 0; i < 3; i++) for (const span of spans) lean.onEnd(span);
    // 9 spans: two full batches of 4 go at once, the last one waits for the delay or a flush.
    await waitFor(() => sink.bodies.length === 2, { what: "the two full batches at the sink" });
    await lean.shutdown();
    expect(sink.bodies).toHaveLength(3);
    const counts = sink.bodies.map((b) => {
      const req = fromBinary(ExportTraceServiceRequestSchema, b as Buffer);
      expect(req.resourceSpans).toHaveLength(1);
      return req.resourceSpans[0]?.scopeSpans.reduce((n, s) => n + s.spans.length, 0);
    });
    expect(counts).toEqual([4, 4, 1]);
  });

  it("retries a 503 and drops spans beyond OTEL_BSP_MAX_QUEUE_SIZE", async () => {
    const spans = makeSpans();
    sink.answers.push(503);
    const lean = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: { authorization: "Bearer t" },
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({ OTEL_BSP_MAX_QUEUE_SIZE: "2", OTEL_BSP_SCHEDULE_DELAY: "60000" }),
    });
    for (const span of spans) lean.onEnd(span);
    expect(lean.dropped).toBe(1);
    await lean.shutdown();
    expect(sink.answers).toHaveLength(0);
    expect(sink.bodies).toHaveLength(1);
  });

  it("exports nothing of an unsampled span", async () => {
    const lean = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: {},
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({}),
    });
    const [span] = makeSpans();
    if (!span) throw new Error("no span");
    const unsampled = Object.create(span, {
      spanContext: { value: () => ({ ...span.spanContext(), traceFlags: 0 }) },
    }) as ReadableSpan;
    lean.onEnd(unsampled);
    await lean.shutdown();
    expect(sink.bodies).toHaveLength(0);
  });
});

describe("which exporter exports OTLP", () => {
  const kinds = (env: Record<string, string>, protocol?: "http/protobuf" | "http/json") =>
    spanProcessorsFor(["otlp"], env, { endpoint: "http://127.0.0.1:1", protocol }).map(
      (p) => p.constructor.name,
    );

  it("http/protobuf goes through the byte encoder; JSON, gzip and TLS client files through the SDK", () => {
    expect(kinds({})).toEqual([OtlpBytesSpanProcessor.name]);
    expect(kinds({ OTEL_EXPORTER_OTLP_COMPRESSION: "none" })).toEqual([OtlpBytesSpanProcessor.name]);
    expect(kinds({}, "http/json")).toEqual([BatchSpanProcessor.name]);
    expect(kinds({ OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: "gzip" })).toEqual([BatchSpanProcessor.name]);
    expect(kinds({ OTEL_EXPORTER_OTLP_CERTIFICATE: "/ca.pem" })).toEqual([BatchSpanProcessor.name]);
  });

  it("a service's spans reach the receiver through the byte encoder, with the env's headers", async () => {
    const headers: unknown[] = [];
    sink.server.prependListener("request", (req: IncomingMessage) => headers.push(req.headers["x-tenant"]));
    const telemetry = createTelemetry({
      serviceName: "users",
      tracesExporter: "otlp",
      otlpEndpoint: sink.url.replace("/v1/traces", ""),
      env: { OTEL_EXPORTER_OTLP_HEADERS: "x-tenant=t%201" },
    });
    const span = telemetry.tracer.startSpan("users.v1.Users/Get", { kind: SpanKind.SERVER });
    span.end();
    await telemetry.shutdown();
    expect(headers).toEqual(["t 1"]);
    const req = fromBinary(ExportTraceServiceRequestSchema, sink.bodies[0] as Buffer);
    const [resource] = req.resourceSpans;
    expect(resource?.resource?.attributes.find((a) => a.key === "service.name")?.value?.value).toEqual({
      case: "stringValue",
      value: "users",
    });
    expect(resource?.scopeSpans[0]?.spans.map((s) => s.name)).toEqual(["users.v1.Users/Get"]);
  });
});

describe("OtlpWriter", () => {
  it("writes an integer attribute beyond int64 as a double, not its wrapped low 64 bits", async () => {
    const memory = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] });
    provider
      .getTracer("t")
      .startSpan("s", {
        attributes: { huge: 2 ** 64, low: -(2 ** 63) - 4096, edge: -(2 ** 63), top: 2 ** 62 },
      })
      .end();
    const lean = new OtlpBytesSpanProcessor({
      url: sink.url,
      headers: {},
      timeoutMillis: 5000,
      ...batchLimitsFromEnv({}),
    });
    for (const span of memory.getFinishedSpans()) lean.onEnd(span);
    await lean.forceFlush();
    await lean.shutdown();
    const request = fromBinary(ExportTraceServiceRequestSchema, sink.bodies[0] as Buffer);
    const attributes = request.resourceSpans[0]?.scopeSpans[0]?.spans[0]?.attributes ?? [];
    const value = (key: string) => attributes.find((a) => a.key === key)?.value?.value;
    expect(value("huge")).toEqual({ case: "doubleValue", value: 2 ** 64 });
    expect(value("low")).toEqual({ case: "doubleValue", value: -(2 ** 63) - 4096 });
    expect(value("edge")).toEqual({ case: "intValue", value: -(2n ** 63n) });
    expect(value("top")).toEqual({ case: "intValue", value: 2n ** 62n });
  });

  it("writes a nested message longer than 127 bytes with a multi-byte length", () => {
    const w = new OtlpWriter(4);
    const at = w.begin(1);
    w.string(2, "y".repeat(200));
    w.end(at);
    const bytes = w.bytes();
    // tag 1/2, length 203 (0xcb 0x01), then tag 2/2, length 200 (0xc8 0x01), then the text.
    expect([...bytes.subarray(0, 5)]).toEqual([0x0a, 0xcb, 0x01, 0x12, 0xc8]);
    expect(bytes.length).toBe(3 + 203);
  });

  it("writes every nested length in the fewest bytes whatever was reserved for it", () => {
    // Bodies whose lengths sit on each side of the 1, 2 and 3 byte varint limits.
    for (const size of [0, 1, 125, 126, 127, 128, 16_380, 16_381, 16_382, 16_383, 16_384, 2_097_150]) {
      const expected = new BinaryWriter()
        .uint32((1 << 3) | 2)
        .bytes(nested(size))
        .finish();
      for (const outer of [1, 2, 3] as const) {
        for (const inner of [1, 2, 3] as const) {
          const w = new OtlpWriter(8);
          const at = w.begin(1, outer);
          const body = w.begin(2, inner);
          w.string(3, "z".repeat(size));
          w.end(body);
          w.end(at);
          expect(
            Buffer.compare(w.bytes(), Buffer.from(expected)),
            `size ${size}, reserved ${outer}/${inner}`,
          ).toBe(0);
        }
      }
    }
  });
});

/** Field 2 holding field 3 = `size` times "z", as protobuf-es writes it. */
function nested(size: number): Uint8Array {
  const inner = new BinaryWriter()
    .uint32((3 << 3) | 2)
    .string("z".repeat(size))
    .finish();
  return new BinaryWriter()
    .uint32((2 << 3) | 2)
    .bytes(inner)
    .finish();
}
