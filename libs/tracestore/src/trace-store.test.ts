import { describe, expect, it } from "vitest";
import type { StoredSpan } from "./model.js";
import { spanRows } from "./span-tree.js";
import { TraceStore } from "./trace-store.js";

const tid = (n: number) => n.toString(16).padStart(32, "0");
const sid = (n: number) => n.toString(16).padStart(16, "0");

function span(trace: number, id: number, over: Partial<StoredSpan> = {}): StoredSpan {
  const start = 1_000_000_000n * BigInt(trace) + 1_000_000n * BigInt(id);
  return {
    traceId: tid(trace),
    spanId: sid(id),
    name: `span ${id}`,
    kind: "internal",
    service: "svc",
    startTimeUnixNano: String(start),
    endTimeUnixNano: String(start + 5_000_000n),
    durationMs: 5,
    status: { code: "unset" },
    attributes: {},
    resource: { "service.name": "svc" },
    scope: { name: "test" },
    events: [],
    links: [],
    ...over,
  };
}

describe("TraceStore", () => {
  it("drops the oldest trace first when there are more traces than maxTraces", () => {
    const store = new TraceStore({ maxTraces: 3 });
    for (let t = 1; t <= 5; t++) store.add([span(t, 1), span(t, 2, { parentSpanId: sid(1) })]);
    expect(store.listTraces().map((t) => t.traceId)).toEqual([tid(5), tid(4), tid(3)]);
    expect(store.getTrace(tid(1))).toBeUndefined();
    expect(store.stats()).toEqual({
      traces: 3,
      spans: 6,
      bytes: expect.any(Number),
      evictedTraces: 2,
      rejectedSpans: 0,
    });
    // A late span of a kept trace does not make it young again: trace 3 is still the oldest.
    store.add([span(3, 3, { parentSpanId: sid(1) })]);
    store.add([span(6, 1)]);
    expect(store.getTrace(tid(3))).toBeUndefined();
    expect(store.getTrace(tid(4))).toBeDefined();
  });

  it("drops traces a batch did not touch before the batch's own, once per batch", () => {
    const store = new TraceStore({ maxTraces: 2 });
    store.add([span(1, 1)]);
    store.add([span(2, 1)]);
    // Trace 1 is the oldest, but this batch adds to it: trace 2 goes instead.
    store.add([span(3, 1), span(1, 2, { parentSpanId: sid(1) })]);
    expect(store.listTraces().map((t) => t.traceId)).toEqual([tid(3), tid(1)]);
    // A batch of more traces than the store holds keeps its newest.
    store.add([span(4, 1), span(5, 1), span(6, 1)]);
    expect(store.listTraces().map((t) => t.traceId)).toEqual([tid(6), tid(5)]);
    expect(store.stats()).toMatchObject({ traces: 2, spans: 2, evictedTraces: 4 });
  });

  it("drops the oldest traces first when the spans pass maxBytes, and refuses a span its trace cannot hold", () => {
    const one = JSON.stringify(span(1, 1)).length;
    const store = new TraceStore({ maxBytes: one * 4 + 10 });
    store.add([span(1, 1), span(1, 2)]);
    store.add([span(2, 1), span(2, 2)]);
    expect(store.stats().traces).toBe(2);
    store.add([span(3, 1)]);
    // Five spans do not fit in four spans' bytes: trace 1 (the oldest) went, whole.
    expect(store.getTrace(tid(1))).toBeUndefined();
    expect(store.getTrace(tid(2))!.spans).toHaveLength(2);
    expect(store.stats()).toMatchObject({ traces: 2, spans: 3, evictedTraces: 1 });
    expect(store.stats().bytes).toBeLessThanOrEqual(store.maxBytes);
    // A trace that alone would pass the limit keeps what fits and refuses the rest.
    const big = store.add([1, 2, 3, 4, 5].map((i) => span(9, i)));
    expect(big).toEqual({ accepted: 4, rejected: 1 });
    expect(store.listTraces().map((t) => t.traceId)).toEqual([tid(9)]);
    expect(store.stats()).toMatchObject({ spans: 4, rejectedSpans: 1 });
  });

  it("replaces a span sent twice instead of counting it twice", () => {
    const store = new TraceStore();
    store.add([span(1, 1)]);
    const bytes = store.stats().bytes;
    store.add([span(1, 1, { name: "span 1!!" })]);
    expect(store.stats()).toMatchObject({ spans: 1, bytes: bytes + 2 });
    expect(store.getTrace(tid(1))!.spans[0]!.name).toBe("span 1!!");
  });

  it("keeps counts and bytes exact as a trace of one span gets a copy of it, a second span, then copies of both", () => {
    const store = new TraceStore({ maxTraces: 2 });
    const size = (s: StoredSpan) => {
      store.add([s]);
      return store.stats().bytes;
    };
    const one = size(span(1, 1));
    // The same span again, longer, while the trace holds one span: replaced, not added.
    const oneAgain = size(span(1, 1, { name: "span 1 again" }));
    expect(oneAgain - one).toBe("span 1 again".length - "span 1".length);
    expect(store.stats()).toMatchObject({ traces: 1, spans: 1 });
    // A second span of the trace, then copies of each.
    const two = size(span(1, 2, { parentSpanId: sid(1) }));
    store.add([span(1, 2, { parentSpanId: sid(1), name: "span 2!" }), span(1, 1, { name: "span 1" })]);
    expect(store.stats().spans).toBe(2);
    expect(store.stats().bytes).toBe(two - oneAgain + one + 1);
    expect(store.getTrace(tid(1))!.spans.map((s) => s.name)).toEqual(["span 1", "span 2!"]);
    // Evicting the trace of two spans takes both off the counts.
    store.add([span(2, 1)]);
    store.add([span(3, 1)]);
    expect(store.getTrace(tid(1))).toBeUndefined();
    expect(store.stats()).toMatchObject({ traces: 2, spans: 2, evictedTraces: 1 });
    expect(store.stats().bytes).toBe(2 * one);
  });

  it("counts a replaced span at the size it was added with, even if the stored object changed since", () => {
    const store = new TraceStore();
    store.add([span(1, 1)]);
    const bytes = store.stats().bytes;
    // A reader changes the object it was given (the stored span itself, for a decoded span).
    store.getTrace(tid(1))!.spans[0]!.name = "x".repeat(1000);
    store.add([span(1, 1)]);
    expect(store.stats()).toMatchObject({ spans: 1, bytes });
  });

  it("summarises root, services, span count, duration, status and errors; incomplete without a root", () => {
    const store = new TraceStore();
    store.add([
      span(1, 2, {
        parentSpanId: sid(1),
        service: "inventory",
        status: { code: "error", message: "no stock" },
      }),
      span(1, 3, { parentSpanId: sid(2), service: "payments", status: { code: "error" } }),
    ]);
    expect(store.listTraces()[0]).toMatchObject({
      rootName: "span 2",
      complete: false,
      errorCount: 2,
      status: "error",
    });
    store.add([
      span(1, 1, {
        name: "PlaceOrder",
        service: "gateway",
        status: { code: "ok" },
        endTimeUnixNano: "1020000000",
      }),
    ]);
    expect(store.listTraces()[0]).toEqual({
      traceId: tid(1),
      rootName: "PlaceOrder",
      rootService: "gateway",
      complete: true,
      services: ["gateway", "inventory", "payments"],
      spanCount: 3,
      startTimeUnixNano: "1001000000",
      durationMs: 19,
      status: "ok",
      errorCount: 2,
    });
    expect(store.listTraces({ service: "payments" })).toHaveLength(1);
    expect(store.listTraces({ service: "users" })).toHaveLength(0);
  });

  it("finds traces by a span or resource attribute, any of several queries", () => {
    const store = new TraceStore();
    store.add([span(1, 1, { attributes: { "order.id": "o-1" } })]);
    store.add([span(2, 1, { attributes: { "saga.id": "o-2" } })]);
    store.add([span(3, 1, { resource: { "service.instance.id": "i-3" } })]);
    const ids = (q: Parameters<TraceStore["findTraces"]>[0]) => store.findTraces(q).map((t) => t.traceId);
    expect(ids({ attribute: { key: "order.id", value: "o-1" } })).toEqual([tid(1)]);
    expect(ids({ attribute: { key: "order.id", value: "o-2" } })).toEqual([]);
    expect(
      ids({
        attribute: [
          { key: "order.id", value: "o-2" },
          { key: "saga.id", value: "o-2" },
        ],
      }),
    ).toEqual([tid(2)]);
    expect(ids({ attribute: { key: "service.instance.id", value: "i-3" } })).toEqual([tid(3)]);
  });

  it("joins spans of other traces that link into a trace, and spanRows hangs them under the linked span", () => {
    const store = new TraceStore();
    store.add([span(1, 1), span(1, 2, { parentSpanId: sid(1), kind: "producer" })]);
    store.add([
      span(2, 7, { kind: "consumer", links: [{ traceId: tid(1), spanId: sid(2), attributes: {} }] }),
    ]);
    store.add([span(2, 8, { parentSpanId: sid(7) })]);
    const t = store.getTrace(tid(1))!;
    expect(t.linked?.map((s) => s.spanId)).toEqual([sid(7)]);
    expect(spanRows(t).map((r) => [r.span.spanId, r.depth, r.via])).toEqual([
      [sid(1), 0, "root"],
      [sid(2), 1, "parent"],
      [sid(7), 2, "link"],
    ]);
  });
});
