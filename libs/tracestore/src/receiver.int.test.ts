import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { NotificationService } from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { type ManagedProcess, startProcess, waitFor } from "@meshwork/testing";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Receiver, startReceiver } from "./receiver.js";

const fixture = fileURLToPath(new URL("../test/fixtures/traced-service.ts", import.meta.url));

describe("a real service process exporting to the receiver", () => {
  let receiver: Receiver;
  let proc: ManagedProcess;
  let url: string;

  beforeAll(async () => {
    receiver = await startReceiver({ port: 0 });
    // Configured only through the standard environment, as `meshctl up` configures the mesh.
    proc = startProcess(process.execPath, ["--import", "tsx", fixture], {
      env: {
        PORT: "0",
        LOG_LEVEL: "info",
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: "200",
      },
    });
    const listening = await proc.waitForLine((l) => l.includes('"msg":"listening"'), 60_000);
    url = (JSON.parse(listening) as { url: string }).url;
  });
  afterAll(async () => {
    if (proc) await proc.stop("SIGTERM");
    await receiver?.close();
  });

  it("stores its spans decoded, joined to the caller's span across the process boundary, with its logs", async () => {
    // The caller: a span of its own, exported by the protobuf exporter, and its context sent
    // as `traceparent` the way every client of the mesh sends it.
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ "service.name": "caller" }),
      spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${receiver.url}/v1/traces` }))],
    });
    const caller = provider
      .getTracer("int-test")
      .startSpan("call ListNotifications", { kind: SpanKind.CLIENT });
    const headers: Record<string, string> = {};
    new W3CTraceContextPropagator().inject(trace.setSpan(context.active(), caller), headers, {
      set: (c, k, v) => {
        c[k] = v;
      },
    });
    const client = createClient(NotificationService, createGrpcTransport({ baseUrl: url }));
    await client.listNotifications({ userId: "4f1c7a2e-8b1d-4c3a-9e2f-0a1b2c3d4e5f" }, { headers });
    caller.end();
    await provider.shutdown();

    const { traceId, spanId: callerId } = caller.spanContext();
    const stored = await waitFor(
      () => {
        const t = receiver.traces.getTrace(traceId);
        return t && t.spans.length >= 3 ? t : undefined;
      },
      { what: "the caller's span and the service's two spans in the store" },
    );
    const server = stored.spans.find((s) => s.kind === "server");
    const child = stored.spans.find((s) => s.name === "look up notifications");
    expect(server).toMatchObject({
      parentSpanId: callerId,
      service: "traced-fixture",
      name: "meshwork.notifications.v1.NotificationService/ListNotifications",
      attributes: {
        "rpc.system": "grpc",
        "rpc.service": "meshwork.notifications.v1.NotificationService",
        "rpc.method": "ListNotifications",
      },
    });
    expect(child).toMatchObject({
      parentSpanId: server!.spanId,
      service: "traced-fixture",
      attributes: { "user.id": "4f1c7a2e-8b1d-4c3a-9e2f-0a1b2c3d4e5f" },
      events: [{ name: "cache miss" }],
    });
    expect(stored.summary).toMatchObject({
      rootName: "call ListNotifications",
      rootService: "caller",
      complete: true,
      services: ["caller", "traced-fixture"],
      spanCount: 3,
    });
    // Its log line, fed to the log store as `meshctl up` feeds it, carries the trace id.
    for (const line of proc.lines) receiver.logs.addRaw("traced-fixture", line);
    const lines = receiver.logs.forTrace(traceId);
    // The handler's line inside its span, then the runtime's access line of the call.
    expect(lines.map((l) => [l.service, l.msg, l.spanId])).toEqual([
      ["traced-fixture", "looked up notifications", child!.spanId],
      ["traced-fixture", "rpc", server!.spanId],
    ]);
  });
});
