import { createServer, type Server } from "node:http";
import { Writable } from "node:stream";
import { context, propagation, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, describe, expect, it } from "vitest";
import { requestTimeout } from "./deadline.js";
import { createLogger } from "./logger.js";
import { createTelemetry } from "./telemetry.js";

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, destination };
}

describe("telemetry", () => {
  const exporter = new InMemorySpanExporter();
  const telemetry = createTelemetry({
    serviceName: "t",
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  let server: Server | undefined;
  afterAll(async () => {
    server?.close();
    await telemetry.shutdown();
  });

  it("writes JSON log lines with service, level name, and the active span's ids", async () => {
    const { lines, destination } = capture();
    const logger = createLogger({ service: "orders", destination });
    logger.info({ a: 1 }, "outside");
    const span = telemetry.tracer.startSpan("work");
    await context.with(trace.setSpan(ROOT_CONTEXT, span), async () => {
      await Promise.resolve(); // the context survives an await
      logger.warn("inside");
    });
    span.end();
    logger.flush();
    expect(lines[0]).toMatchObject({ service: "orders", level: "info", msg: "outside", a: 1 });
    expect(lines[0]).not.toHaveProperty("trace_id");
    expect(lines[1]).toMatchObject({
      level: "warn",
      msg: "inside",
      trace_id: span.spanContext().traceId,
      span_id: span.spanContext().spanId,
    });
    expect(typeof lines[1]?.time).toBe("string");
  });

  it("propagates W3C trace context in and out", () => {
    const parent = propagation.extract(ROOT_CONTEXT, {
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    });
    const span = telemetry.tracer.startSpan("child", {}, parent);
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(ROOT_CONTEXT, span), carrier);
    span.end();
    expect(span.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(carrier.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  });

  it("serves metrics in the Prometheus text format", async () => {
    telemetry.meter.createCounter("jobs.done").add(3, { kind: "x" });
    server = createServer((req, res) => telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toMatch(/^jobs_done_total\{kind="x"[^}]*\} 3$/m);
  });

  it("exports bound histograms and counters with the meter's instruments, buckets inclusive of their bound", async () => {
    const h = telemetry.createBoundHistogram("work.duration", {
      description: "how long work took",
      unit: "s",
      boundaries: [0.1, 1],
    });
    const fast = h.bind({ kind: "fast" });
    const slow = h.bind({ kind: "slow" });
    fast(0.05);
    fast(0.1); // on the bound: in the first bucket
    slow(0.5);
    slow(7);
    h.bind({ kind: "unused" });
    expect(() =>
      telemetry.createBoundHistogram("bad", { description: "", unit: "s", boundaries: [1, 1] }),
    ).toThrow(/ascend/);
    const addr = server?.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toMatch(/^# TYPE work_duration histogram$/m);
    expect(text).toMatch(/^work_duration_bucket\{kind="fast"[^}]*le="0.1"\} 2$/m);
    expect(text).toMatch(/^work_duration_bucket\{kind="slow"[^}]*le="0.1"\} 0$/m);
    expect(text).toMatch(/^work_duration_bucket\{kind="slow"[^}]*le="1"\} 1$/m);
    expect(text).toMatch(/^work_duration_bucket\{kind="slow"[^}]*le="\+Inf"\} 2$/m);
    expect(text).toMatch(/^work_duration_sum\{kind="slow"[^}]*\} 7.5$/m);
    expect(text).toMatch(/^work_duration_count\{kind="fast"[^}]*\} 2$/m);
    expect(text).not.toContain('kind="unused"');
    const jobs = telemetry.createBoundCounter("bound.jobs", "jobs done");
    const ok = jobs.bind({ outcome: "ok" });
    ok();
    ok(2);
    jobs.bind({ outcome: "idle" });
    const again = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(again).toMatch(/^bound_jobs_total\{outcome="ok"[^}]*\} 3$/m);
    expect(again).not.toContain('outcome="idle"');
  });

  it("sends spans over OTLP/HTTP when the exporter is otlp", async () => {
    const received: string[] = [];
    const collector = createServer((req, res) => {
      received.push(`${req.method} ${req.url} ${req.headers["content-type"]}`);
      req.resume();
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
    });
    await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
    const addr = collector.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const otlp = createTelemetry({
      serviceName: "t-otlp",
      tracesExporter: "otlp",
      otlpEndpoint: `http://127.0.0.1:${port}/`,
    });
    try {
      otlp.tracer.startSpan("exported").end();
      await otlp.shutdown(); // flushes the batch
      expect(received).toEqual([expect.stringMatching(/^POST \/v1\/traces application\/(json|x-protobuf)$/)]);
    } finally {
      collector.close();
    }
  });

  it("gives spans ids and sampling flags but records nothing when no processor would see them", () => {
    const idOnly = createTelemetry({ serviceName: "ids" });
    const parentId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const incoming = propagation.extract(ROOT_CONTEXT, {
      traceparent: `00-${parentId}-00f067aa0ba902b7-01`,
    });
    const span = idOnly.tracer.startSpan("child", {}, incoming);
    expect(span.isRecording()).toBe(false);
    expect(span.spanContext()).toMatchObject({ traceId: parentId, traceFlags: 1 });
    expect(span.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(span.spanContext().spanId).not.toBe("00f067aa0ba902b7");
    // Downstream, the trace goes on from this span.
    const out: Record<string, string> = {};
    propagation.inject(trace.setSpan(incoming, span), out);
    expect(out.traceparent).toBe(`00-${parentId}-${span.spanContext().spanId}-01`);
    // A new trace of its own, active inside startActiveSpan; a root span ignores the parent.
    idOnly.tracer.startActiveSpan("root", (root) => {
      expect(trace.getActiveSpan()).toBe(root);
      expect(root.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(root.spanContext().traceId).not.toBe(parentId);
      expect(root.spanContext().traceFlags).toBe(1);
    });
    expect(idOnly.tracer.startSpan("r", { root: true }, incoming).spanContext().traceId).not.toBe(parentId);

    // The configured sampler decides the flag: none of the new traces at 0, a sampled parent always.
    const never = createTelemetry({ serviceName: "ids", sampleRatio: 0 });
    expect(never.tracer.startSpan("new").spanContext().traceFlags).toBe(0);
    expect(never.tracer.startSpan("followed", {}, incoming).spanContext().traceFlags).toBe(1);
  });

  it("reads a call's timeout from either protocol's header, and names a malformed one", () => {
    expect(requestTimeout("250m", null)).toEqual({ ms: 250 });
    expect(requestTimeout("2S", "10")).toEqual({ ms: 2000 }); // gRPC's header wins
    expect(requestTimeout(undefined, "1500")).toEqual({ ms: 1500 });
    expect(requestTimeout(null, null)).toEqual({});
    expect(requestTimeout("soon", null).error).toBe("protocol error: invalid grpc timeout value: soon");
    expect(requestTimeout(null, "-1").error).toBe("invalid connect-timeout-ms: -1");
  });
});
