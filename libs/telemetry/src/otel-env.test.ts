import { createServer, type IncomingMessage } from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { metrics, propagation, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTelemetry, processTracer, startTelemetry } from "./telemetry.js";

const SAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/** An OTLP/HTTP receiver that answers every export with success and remembers what came. */
async function startHttpSink() {
  const received: Array<{ path: string; contentType: string; bytes: number }> = [];
  /** The bodies of JSON exports, parsed. */
  const json: unknown[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      received.push({
        path: req.url ?? "",
        contentType: req.headers["content-type"] ?? "",
        bytes: body.byteLength,
      });
      const isJson = (req.headers["content-type"] ?? "").includes("json");
      if (isJson) json.push(JSON.parse(body.toString("utf8")));
      res
        .writeHead(200, { "content-type": isJson ? "application/json" : "application/x-protobuf" })
        .end(isJson ? "{}" : "");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    received,
    json,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => server.close(),
  };
}

describe("the standard OTEL_* variables", () => {
  let sink: Awaited<ReturnType<typeof startHttpSink>>;
  beforeAll(async () => {
    sink = await startHttpSink();
  });
  afterAll(() => sink?.close());

  it("OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES end up on exported spans, over the code's defaults", async () => {
    const exporter = new InMemorySpanExporter();
    const t = createTelemetry({
      serviceName: "orders",
      serviceVersion: "1.2.3",
      spanProcessors: [new SimpleSpanProcessor(exporter)],
      env: {
        OTEL_SERVICE_NAME: "orders-eu",
        OTEL_RESOURCE_ATTRIBUTES:
          "deployment.environment.name=staging,team=a%2Cb, broken ,service.name=ignored",
      },
    });
    t.tracer.startSpan("work").end();
    const [span] = exporter.getFinishedSpans();
    await t.shutdown();
    expect(span?.resource.attributes).toMatchObject({
      "service.name": "orders-eu",
      "service.version": "1.2.3",
      "deployment.environment.name": "staging",
      team: "a,b",
      "telemetry.sdk.language": "nodejs",
    });
  });

  it("OTEL_TRACES_SAMPLER (and _ARG) choose the sampler; unset, the configured ratio", () => {
    const sampled = (env: Record<string, string>, parent?: string, ratio?: number) => {
      const exporter = new InMemorySpanExporter();
      const t = createTelemetry({
        serviceName: "s",
        sampleRatio: ratio,
        spanProcessors: [new SimpleSpanProcessor(exporter)],
        env,
      });
      const ctx = parent ? propagation.extract(ROOT_CONTEXT, { traceparent: parent }) : ROOT_CONTEXT;
      t.tracer.startSpan("x", {}, ctx).end();
      return exporter.getFinishedSpans().length === 1;
    };
    expect(sampled({})).toBe(true);
    expect(sampled({}, undefined, 0)).toBe(false);
    expect(sampled({ OTEL_TRACES_SAMPLER: "always_off" })).toBe(false);
    expect(sampled({ OTEL_TRACES_SAMPLER: "always_off" }, SAMPLED_PARENT)).toBe(false);
    expect(sampled({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" })).toBe(
      false,
    );
    expect(
      sampled(
        { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" },
        SAMPLED_PARENT,
      ),
    ).toBe(true);
    expect(sampled({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "1" }, undefined, 0)).toBe(
      true,
    );
    // Even with nothing exported, the id-only tracer flags spans by the configured sampler.
    const quiet = createTelemetry({ serviceName: "q", env: { OTEL_TRACES_SAMPLER: "always_off" } });
    expect(quiet.tracer.startSpan("x").spanContext().traceFlags).toBe(0);
  });

  it("OTEL_TRACES_EXPORTER=otlp sends to OTEL_EXPORTER_OTLP_ENDPOINT in the protocol OTEL_EXPORTER_OTLP_PROTOCOL selects", async () => {
    for (const [protocol, contentType] of [
      [undefined, "application/x-protobuf"],
      ["http/protobuf", "application/x-protobuf"],
      ["http/json", "application/json"],
    ] as const) {
      const before = sink.received.length;
      const t = createTelemetry({
        serviceName: "p",
        env: {
          OTEL_TRACES_EXPORTER: "otlp",
          OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
          ...(protocol ? { OTEL_EXPORTER_OTLP_PROTOCOL: protocol } : {}),
        },
      });
      t.tracer.startSpan("exported").end();
      await t.shutdown(); // flushes the batch
      expect(sink.received.slice(before)).toEqual([
        { path: "/v1/traces", contentType, bytes: expect.any(Number) },
      ]);
    }
    // The signal's own endpoint variable is used as it is.
    const before = sink.received.length;
    const t = createTelemetry({
      serviceName: "p",
      env: { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${sink.url}/custom/path` },
    });
    t.tracer.startSpan("exported").end();
    await t.shutdown();
    expect(sink.received.slice(before).map((r) => r.path)).toEqual(["/custom/path"]);
    expect(() =>
      createTelemetry({
        serviceName: "p",
        env: { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "udp" },
      }),
    ).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL.*udp/);
  });

  it("OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over gRPC (HTTP/2) to the collector's TraceService", async () => {
    const paths: string[] = [];
    const server = http2.createServer();
    server.on("stream", (stream, headers) => {
      paths.push(`${headers[":path"]} ${headers["content-type"]}`);
      stream.on("data", () => {});
      stream.on("end", () => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const t = createTelemetry({
        serviceName: "g",
        env: {
          OTEL_TRACES_EXPORTER: "otlp",
          OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        },
      });
      t.tracer.startSpan("exported").end();
      await t.shutdown();
      expect(paths).toEqual(["/opentelemetry.proto.collector.trace.v1.TraceService/Export application/grpc"]);
    } finally {
      server.close();
    }
  });

  it("OTEL_METRICS_EXPORTER=otlp pushes metrics besides the Prometheus endpoint; prometheus alone pushes nothing", async () => {
    const before = sink.received.length;
    const t = createTelemetry({
      serviceName: "m",
      env: {
        OTEL_METRICS_EXPORTER: "otlp,prometheus",
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_METRIC_EXPORT_INTERVAL: "100",
      },
    });
    t.meter.createCounter("jobs.done").add(1);
    t.createBoundCounter("bound.jobs", "jobs").bind({ kind: "x" })();
    await t.shutdown(); // a last collection and push
    expect(
      sink.received
        .slice(before)
        .some((r) => r.path === "/v1/metrics" && r.contentType === "application/json"),
    ).toBe(true);
    const onlyProm = sink.received.length;
    const p = createTelemetry({
      serviceName: "m",
      env: { OTEL_METRICS_EXPORTER: "prometheus", OTEL_EXPORTER_OTLP_ENDPOINT: sink.url },
    });
    p.meter.createCounter("jobs.done").add(1);
    await p.shutdown();
    expect(sink.received.length).toBe(onlyProm);
    expect(() => createTelemetry({ serviceName: "m", env: { OTEL_METRICS_EXPORTER: "statsd" } })).toThrow(
      /OTEL_METRICS_EXPORTER.*statsd/,
    );
  });
});

describe("startTelemetry: the process's telemetry through @opentelemetry/sdk-node", () => {
  it("registers its providers globally (instrumentation without a tracer of its own records into it); a second call keeps its own", async () => {
    const sink = await startHttpSink();
    try {
      const t = startTelemetry({
        serviceName: "proc",
        env: {
          OTEL_TRACES_EXPORTER: "otlp",
          OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
          OTEL_RESOURCE_ATTRIBUTES: "host.name=test-host",
        },
      });
      expect(processTracer()).toBe(t.tracer); // what transports and databases given none use
      trace.getTracer("some-library").startSpan("from the global API").end();
      t.tracer.startSpan("from the service").end();
      expect(metrics.getMeterProvider().getMeter("x")).toBeDefined();
      const second = createTelemetry({ serviceName: "second" });
      expect(second.tracer).not.toBe(t.tracer);
      const third = startTelemetry({ serviceName: "third" });
      // Not global: the global tracer still belongs to the first.
      expect(third.tracer.startSpan("x").isRecording()).toBe(false);
      await t.shutdown();
      expect(sink.received).toEqual([
        { path: "/v1/traces", contentType: "application/json", bytes: expect.any(Number) },
      ]);
      // One batch: both spans, under the resource built from the options and the environment.
      const body = sink.json[0] as {
        resourceSpans: Array<{
          resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
          scopeSpans: Array<{ spans: Array<{ name: string }> }>;
        }>;
      };
      const rs = body.resourceSpans[0];
      const attrs = Object.fromEntries(
        rs?.resource.attributes.map((a) => [a.key, a.value.stringValue]) ?? [],
      );
      expect(attrs).toMatchObject({ "service.name": "proc", "host.name": "test-host" });
      expect(rs?.scopeSpans.flatMap((s) => s.spans.map((x) => x.name)).sort()).toEqual([
        "from the global API",
        "from the service",
      ]);
    } finally {
      sink.close();
    }
  });
});
