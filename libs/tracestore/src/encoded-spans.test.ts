import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ExportTraceServiceRequestSchema } from "@meshwork/contracts/opentelemetry/proto/collector/trace/v1/trace_service";
import type { KeyValue } from "@meshwork/contracts/opentelemetry/proto/common/v1/common";
import { SpanSchema } from "@meshwork/contracts/opentelemetry/proto/trace/v1/trace";
import { describe, expect, it } from "vitest";
import { decodeEncodedSpan, encodedSpansFromProtobuf, OtlpDecodeError, spansFromRequest } from "./otlp.js";
import { TraceStore } from "./trace-store.js";

const id = (hex: string) => Buffer.from(hex, "hex");
const T1 = "0af7651916cd43dd8448eb211c80319c";
const T2 = "4bf92f3577b34da6a3ce929d0e0e4736";
const str = (key: string, value: string): KeyValue =>
  ({ key, value: { value: { case: "stringValue", value } } }) as KeyValue;

/** A request with two resources, two scopes, parents, attributes, events, links and a status. */
function request() {
  return create(ExportTraceServiceRequestSchema, {
    resourceSpans: [
      {
        resource: { attributes: [str("service.name", "orders"), str("deployment.environment", "test")] },
        scopeSpans: [
          {
            scope: { name: "@meshwork/runtime", version: "0.1.0" },
            spans: [
              {
                traceId: id(T1),
                spanId: id("00f067aa0ba902b7"),
                name: "meshwork.orders.v1.OrderService/PlaceOrder",
                kind: 2,
                startTimeUnixNano: 1_700_000_000_000_000_000n,
                endTimeUnixNano: 1_700_000_000_250_000_000n,
                attributes: [
                  str("rpc.system", "grpc"),
                  str("order.id", "o-42"),
                  { key: "rpc.grpc.status_code", value: { value: { case: "intValue", value: 0n } } },
                ],
              },
            ],
          },
          {
            scope: { name: "@meshwork/db" },
            spans: [
              {
                traceId: id(T1),
                spanId: id("1111111111111111"),
                parentSpanId: id("00f067aa0ba902b7"),
                name: "INSERT orders",
                kind: 3,
                startTimeUnixNano: 1_700_000_000_010_000_000n,
                endTimeUnixNano: 1_700_000_000_020_000_000n,
                events: [{ name: "row written", timeUnixNano: 1_700_000_000_015_000_000n, attributes: [] }],
                status: { code: 2, message: "deadlock" },
              },
            ],
          },
        ],
      },
      {
        resource: { attributes: [str("service.name", "notifications")] },
        scopeSpans: [
          {
            scope: { name: "@meshwork/events" },
            spans: [
              {
                traceId: id(T2),
                spanId: id("2222222222222222"),
                name: "process orders.placed",
                kind: 5,
                startTimeUnixNano: 1_700_000_000_300_000_000n,
                endTimeUnixNano: 1_700_000_000_310_000_000n,
                links: [
                  {
                    traceId: id(T1),
                    spanId: id("1111111111111111"),
                    attributes: [str("messaging.system", "nats")],
                  },
                ],
              },
            ],
          },
        ],
      },
    ],
  });
}

describe("protobuf spans kept encoded", () => {
  it("read back exactly as a whole-request decode reads them, ids and link targets indexed", () => {
    const body = toBinary(ExportTraceServiceRequestSchema, request());
    const encoded = encodedSpansFromProtobuf(body);
    const decoded = spansFromRequest(fromBinary(ExportTraceServiceRequestSchema, body));
    expect(encoded.rejected).toBe(0);
    expect(encoded.spans.map(decodeEncodedSpan)).toEqual(decoded.spans);
    expect(encoded.spans.map((s) => [s.traceId, s.spanId, s.links])).toEqual([
      [T1, "00f067aa0ba902b7", undefined],
      [T1, "1111111111111111", undefined],
      [T2, "2222222222222222", [{ traceId: T1, spanId: "1111111111111111" }]],
    ]);
    // Each span holds its own bytes, not a view of the request.
    for (const s of encoded.spans) expect(s.bytes.buffer).not.toBe(body.buffer);
  });

  it("copies spans out in pieces of at most 8 KiB shared by neighbours, a larger span in one of its own", () => {
    const span = (n: number, attribute: string) =>
      create(SpanSchema, {
        traceId: id(n.toString(16).padStart(32, "0")),
        spanId: id(n.toString(16).padStart(16, "0")),
        name: `span ${n}`,
        kind: 2,
        startTimeUnixNano: 1n,
        endTimeUnixNano: 2n,
        attributes: [str("payload", attribute)],
      });
    // 100 spans of about 230 bytes, one of 10,000 in the middle, and one with an invalid id.
    const spans = Array.from({ length: 100 }, (_, i) => span(i + 1, "x".repeat(200)));
    spans.splice(50, 0, span(1000, "y".repeat(10_000)));
    spans.splice(20, 0, create(SpanSchema, { ...span(2000, "z"), spanId: new Uint8Array(8) }));
    const body = toBinary(
      ExportTraceServiceRequestSchema,
      create(ExportTraceServiceRequestSchema, {
        resourceSpans: [{ resource: {}, scopeSpans: [{ scope: { name: "s" }, spans }] }],
      }),
    );
    const encoded = encodedSpansFromProtobuf(body);
    expect(encoded.rejected).toBe(1);
    const kept = spans.filter((s) => s.spanId.some((b) => b !== 0));
    expect(encoded.spans.map((s) => Buffer.from(s.bytes))).toEqual(
      kept.map((s) => Buffer.from(toBinary(SpanSchema, s))),
    );
    expect(encoded.spans.map((s) => s.size)).toEqual(encoded.spans.map((s) => s.bytes.length));
    const pieces = new Set(encoded.spans.map((s) => s.bytes.buffer));
    expect(pieces.has(body.buffer)).toBe(false);
    const big = encoded.spans.find((s) => s.spanId === (1000).toString(16).padStart(16, "0"))!;
    for (const piece of pieces) {
      if (piece === big.bytes.buffer) expect(piece.byteLength).toBe(big.size);
      else expect(piece.byteLength).toBeLessThanOrEqual(8 * 1024);
    }
    // About 23 KB of small spans: three or four pieces, and the big span's own.
    expect(pieces.size).toBeGreaterThanOrEqual(4);
    expect(pieces.size).toBeLessThanOrEqual(5);
    expect(decodeEncodedSpan(big).attributes).toEqual({ payload: "y".repeat(10_000) });
  });

  it("a store of encoded spans lists, finds, joins links and bounds its bytes like a decoded one", () => {
    const body = toBinary(ExportTraceServiceRequestSchema, request());
    const encodedStore = new TraceStore();
    const decodedStore = new TraceStore();
    expect(encodedStore.addEncoded(encodedSpansFromProtobuf(body).spans)).toEqual({
      accepted: 3,
      rejected: 0,
    });
    decodedStore.add(spansFromRequest(fromBinary(ExportTraceServiceRequestSchema, body)).spans);
    expect(encodedStore.listTraces()).toEqual(decodedStore.listTraces());
    expect(encodedStore.getTrace(T1)).toEqual(decodedStore.getTrace(T1));
    expect(encodedStore.getTrace(T1)!.linked!.map((s) => s.name)).toEqual(["process orders.placed"]);
    expect(encodedStore.findTraces({ attribute: { key: "order.id", value: "o-42" } })).toEqual(
      decodedStore.findTraces({ attribute: { key: "order.id", value: "o-42" } }),
    );
    // Counted by encoded size: three spans of this request fit in a limit a little above it.
    const small = new TraceStore({ maxBytes: body.length + 3 * 200 });
    small.addEncoded(encodedSpansFromProtobuf(body).spans);
    expect(small.stats()).toMatchObject({ traces: 2, spans: 3, evictedTraces: 0 });
    const tight = new TraceStore({ maxBytes: 300 });
    tight.addEncoded(encodedSpansFromProtobuf(body).spans);
    expect(tight.stats().bytes).toBeLessThanOrEqual(300);
    expect(tight.stats().evictedTraces + tight.stats().rejectedSpans).toBeGreaterThan(0);
  });

  it("rejects spans with invalid ids by name, and a span whose fields overrun it is a malformed body", () => {
    const req = request();
    req.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.spanId = new Uint8Array(8);
    const rejected = encodedSpansFromProtobuf(toBinary(ExportTraceServiceRequestSchema, req));
    expect(rejected.rejected).toBe(1);
    expect(rejected.reason).toBe(
      'span "meshwork.orders.v1.OrderService/PlaceOrder": span id must be 8 bytes, not all zero',
    );
    expect(rejected.spans).toHaveLength(2);

    // resource_spans { scope_spans { spans { trace_id, span_id, attributes: 127 bytes claimed } } }
    const span = Buffer.concat([
      Buffer.from([0x0a, 16]),
      id(T1),
      Buffer.from([0x12, 8]),
      id("1111111111111111"),
      Buffer.from([0x4a, 0x7f, 0x0a, 0x01, 0x61]),
    ]);
    const wrap = (field: number, inner: Buffer) =>
      Buffer.concat([Buffer.from([(field << 3) | 2, inner.length]), inner]);
    const body = wrap(1, wrap(2, wrap(2, span)));
    expect(() => encodedSpansFromProtobuf(body)).toThrow(OtlpDecodeError);
    expect(() => encodedSpansFromProtobuf(body)).toThrow(
      /^invalid protobuf opentelemetry\.proto\.collector\.trace\.v1\.ExportTraceServiceRequest: /,
    );
  });

  it("a span whose nested values do not decode is shown with its ids and the decoder's message", () => {
    // attributes = one KeyValue whose own bytes are an illegal tag (field 0).
    const span = Buffer.concat([
      Buffer.from([0x0a, 16]),
      id(T1),
      Buffer.from([0x12, 8]),
      id("1111111111111111"),
      Buffer.from([0x4a, 0x02, 0x00, 0x00]),
    ]);
    const wrap = (field: number, inner: Buffer) =>
      Buffer.concat([Buffer.from([(field << 3) | 2, inner.length]), inner]);
    const [encoded] = encodedSpansFromProtobuf(wrap(1, wrap(2, wrap(2, span)))).spans;
    expect(decodeEncodedSpan(encoded!)).toMatchObject({
      traceId: T1,
      spanId: "1111111111111111",
      name: "(undecodable span)",
      service: "unknown_service",
      status: { code: "error", message: expect.stringMatching(/^invalid protobuf span: /) },
    });
  });
});
