import {
  type Attributes,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  SamplingDecision,
  SimpleSpanProcessor,
  type SpanLimits,
} from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { IdOnlyTracer } from "./id-tracer.js";
import { leanSpanStarter } from "./lean-span.js";
import { createTelemetry } from "./telemetry.js";

const start: Attributes = Object.freeze({
  "rpc.system": "grpc",
  "rpc.service": "s.v1.S",
  "rpc.method": "Get",
});
const remoteParent = () =>
  trace.setSpanContext(ROOT_CONTEXT, {
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    traceFlags: 1,
    isRemote: true,
  });

/** A metric reader that collects when asked. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

function pipeline(spanLimits?: SpanLimits) {
  const exporter = new InMemorySpanExporter();
  const started: ReadableSpan[] = [];
  const provider = new BasicTracerProvider({
    spanLimits,
    spanProcessors: [
      {
        onStart: (s) => started.push(s as unknown as ReadableSpan),
        onEnd: () => {},
        forceFlush: async () => {},
        shutdown: async () => {},
      },
      new SimpleSpanProcessor(exporter),
    ],
  });
  const tracer = provider.getTracer("lean-test", "1.0.0");
  const lean = leanSpanStarter(tracer);
  if (!lean) throw new Error("the SDK's tracer was not recognised");
  return { exporter, started, tracer, lean };
}

/** The same calls on either span. */
function exercise(span: Span): void {
  span.setAttribute("rpc.grpc.status_code", 13);
  span.setAttribute("long", "abcdefghij");
  span.setAttributes({ "a.b": true, bad: {} as never });
  span.addEvent("first", { n: 1, m: "x" });
  span.recordException(Object.assign(new Error("boom"), { name: "BoomError" }));
  span.addLink({
    context: { traceId: "1".repeat(32), spanId: "2".repeat(16), traceFlags: 1 },
    attributes: { k: "v" },
  });
  span.setStatus({ code: SpanStatusCode.ERROR, message: "failed" });
  span.updateName("renamed");
  span.end();
  span.setAttribute("after.end", 1); // ignored, as the SDK's span does
}

/** What an exporter reads of a span, without the parts that differ between two spans (ids, times). */
function view(span: ReadableSpan) {
  return {
    name: span.name,
    kind: span.kind,
    traceId: span.spanContext().traceId,
    traceFlags: span.spanContext().traceFlags,
    parent: span.parentSpanContext?.spanId,
    status: span.status,
    attributes: span.attributes,
    events: span.events.map((e) => ({
      ...e,
      time: undefined,
      attributes: { ...e.attributes, "exception.stacktrace": undefined },
    })),
    links: span.links,
    ended: span.ended,
    resource: span.resource,
    scope: span.instrumentationScope,
    dropped: [span.droppedAttributesCount, span.droppedEventsCount, span.droppedLinksCount],
  };
}

describe("leanSpanStarter", () => {
  it("hands the processors a span an exporter reads as it reads the SDK's own span after the same calls", () => {
    const { exporter, started, tracer, lean } = pipeline();
    exercise(tracer.startSpan("call", { kind: SpanKind.SERVER, attributes: start }, remoteParent()));
    exercise(lean("call", SpanKind.SERVER, start, remoteParent()));
    const [sdk, mine] = exporter.getFinishedSpans();
    expect(started).toHaveLength(2);
    expect(started[1]).toBe(mine);
    expect(view(mine!)).toEqual(view(sdk!));
    expect(mine!.attributes).toMatchObject({ "rpc.method": "Get", "rpc.grpc.status_code": 13, "a.b": true });
    expect(mine!.parentSpanContext?.spanId).toBe("b7ad6b7169203331");
    expect(mine!.spanContext().spanId).not.toBe(sdk!.spanContext().spanId);
    // The start attributes the span was given are left as they were.
    expect(start).toEqual({ "rpc.system": "grpc", "rpc.service": "s.v1.S", "rpc.method": "Get" });
  });

  it("applies the provider's span limits as the SDK does", () => {
    const limits: SpanLimits = {
      attributeCountLimit: 4,
      attributeValueLengthLimit: 3,
      eventCountLimit: 1,
      linkCountLimit: 0,
    };
    const { exporter, tracer, lean } = pipeline(limits);
    exercise(tracer.startSpan("call", { kind: SpanKind.SERVER, attributes: start }));
    exercise(lean("call", SpanKind.SERVER, start, ROOT_CONTEXT));
    const [sdk, mine] = exporter.getFinishedSpans();
    expect(view(mine!)).toEqual({ ...view(sdk!), traceId: mine!.spanContext().traceId });
    expect(mine!.attributes).toEqual({
      "rpc.system": "grp",
      "rpc.service": "s.v",
      "rpc.method": "Get",
      "rpc.grpc.status_code": 13,
    });
    expect(mine!.droppedAttributesCount).toBe(2);
    expect(mine!.events.map((e) => e.name)).toEqual(["exception"]);
    expect(mine!.droppedLinksCount).toBe(1);
  });

  it("counts the shared start attributes against the count limit when a span first sets its own", () => {
    const { exporter, lean } = pipeline({ attributeCountLimit: 4 });
    const span = lean("call", SpanKind.SERVER, start, ROOT_CONTEXT);
    span.setAttribute("rpc.grpc.status_code", 0);
    span.setAttribute("one.too.many", 1);
    span.setAttribute("rpc.method", "Got");
    span.end();
    const [mine] = exporter.getFinishedSpans();
    expect(mine!.attributes).toEqual({ ...start, "rpc.method": "Got", "rpc.grpc.status_code": 0 });
    expect(mine!.droppedAttributesCount).toBe(1);
  });

  it("keeps times as the SDK's span has them: wall clock, end after start, duration their difference", () => {
    const { exporter, lean } = pipeline();
    const before = Date.now();
    const span = lean("call", SpanKind.SERVER, start, ROOT_CONTEXT);
    for (let i = 0; i < 1e5; i++) Math.sqrt(i);
    span.end();
    const after = Date.now();
    const [mine] = exporter.getFinishedSpans();
    const ms = (t: readonly [number, number]) => t[0] * 1000 + t[1] / 1e6;
    expect(ms(mine!.startTime)).toBeGreaterThanOrEqual(before - 1);
    expect(ms(mine!.endTime)).toBeLessThanOrEqual(after + 1);
    expect(ms(mine!.endTime)).toBeGreaterThanOrEqual(ms(mine!.startTime));
    expect(ms(mine!.duration)).toBeCloseTo(ms(mine!.endTime) - ms(mine!.startTime), 3);
    expect(mine!.duration[1]).toBeLessThan(1e9);
  });

  it("asks the tracer's sampler: a dropped span records nothing and reaches no processor, its ids still propagate", () => {
    const exporter = new InMemorySpanExporter();
    const started: unknown[] = [];
    const provider = new BasicTracerProvider({
      sampler: new AlwaysOffSampler(),
      spanProcessors: [
        {
          onStart: (s) => started.push(s),
          onEnd: () => {},
          forceFlush: async () => {},
          shutdown: async () => {},
        },
        new SimpleSpanProcessor(exporter),
      ],
    });
    const lean = leanSpanStarter(provider.getTracer("t"))!;
    const span = lean("call", SpanKind.SERVER, start, remoteParent());
    expect(span.isRecording()).toBe(false);
    expect(span.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(span.spanContext().traceFlags).toBe(0);
    span.end();
    expect(started).toHaveLength(0);
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it("recognises the SDK tracer a service's telemetry makes when spans are recorded", async () => {
    const telemetry = createTelemetry({
      serviceName: "lean",
      spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())],
    });
    expect(leanSpanStarter(telemetry.tracer)).toBeTypeOf("function");
    await telemetry.shutdown();
  });

  it("hands a sampler of the user's own a copy of the shared start attributes, and keeps what it writes", () => {
    const writing: Sampler = {
      shouldSample(_ctx, _traceId, _name, _kind, attributes) {
        attributes["sampler.note"] = "seen";
        return { decision: SamplingDecision.RECORD_AND_SAMPLED };
      },
      toString: () => "writing",
    };
    for (const sampler of [writing, new ParentBasedSampler({ root: writing })]) {
      const exporter = new InMemorySpanExporter();
      const provider = new BasicTracerProvider({
        sampler,
        spanProcessors: [new SimpleSpanProcessor(exporter)],
      });
      const lean = leanSpanStarter(provider.getTracer("t"))!;
      // A frozen object throws when written to (ES modules are strict): it must not reach the sampler.
      lean("call", SpanKind.SERVER, start, ROOT_CONTEXT).end();
      lean("call", SpanKind.SERVER, start, ROOT_CONTEXT).end();
      expect(Object.keys(start)).toEqual(["rpc.system", "rpc.service", "rpc.method"]);
      const spans = exporter.getFinishedSpans();
      expect(spans).toHaveLength(2);
      for (const span of spans) expect(span.attributes).toEqual({ ...start, "sampler.note": "seen" });
    }
  });

  it("is not used for a tracer that is not the SDK's", () => {
    expect(leanSpanStarter(new IdOnlyTracer(new AlwaysOffSampler()))).toBeUndefined();
  });

  it("counts its spans in the SDK's span metrics when the tracer provider was given a meter provider", async () => {
    const reader = new TestReader();
    const provider = new BasicTracerProvider({
      meterProvider: new MeterProvider({ readers: [reader] }),
      spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())],
    });
    const lean = leanSpanStarter(provider.getTracer("lean-test"))!;
    const first = lean("s.v1.S/Get", SpanKind.SERVER, start, remoteParent());
    lean("s.v1.S/Get", SpanKind.SERVER, start, ROOT_CONTEXT).end();
    const points = async (name: string) => {
      const { resourceMetrics } = await reader.collect();
      const metric = resourceMetrics.scopeMetrics
        .flatMap((sm) => sm.metrics)
        .find((m) => m.descriptor.name === name);
      return (metric?.dataPoints ?? []).map((p) => [p.attributes, p.value]);
    };
    expect(await points("otel.sdk.span.started")).toEqual([
      [{ "otel.span.parent.origin": "remote", "otel.span.sampling_result": "RECORD_AND_SAMPLE" }, 1],
      [{ "otel.span.parent.origin": "none", "otel.span.sampling_result": "RECORD_AND_SAMPLE" }, 1],
    ]);
    expect(await points("otel.sdk.span.live")).toEqual([
      [{ "otel.span.sampling_result": "RECORD_AND_SAMPLE" }, 1],
    ]);
    first.end();
    expect(await points("otel.sdk.span.live")).toEqual([
      [{ "otel.span.sampling_result": "RECORD_AND_SAMPLE" }, 0],
    ]);
  });

  it("does not call the SDK's span metrics when they count nothing (no meter provider: the default)", () => {
    const { tracer, lean, exporter } = pipeline();
    const metrics = (tracer as unknown as { _tracerMetrics: { startSpan: (...a: unknown[]) => unknown } })
      ._tracerMetrics;
    let calls = 0;
    const startSpan = metrics.startSpan.bind(metrics);
    metrics.startSpan = (...a: unknown[]) => {
      calls++;
      return startSpan(...a);
    };
    lean("s.v1.S/Get", SpanKind.SERVER, start, remoteParent()).end();
    expect(exporter.getFinishedSpans()).toHaveLength(1);
    expect(calls).toBe(0);
    // The SDK's own startSpan still calls them: the spy is where the SDK looks.
    tracer.startSpan("sdk").end();
    expect(calls).toBe(1);
  });
});
