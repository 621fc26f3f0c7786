import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { type ClientProtocol, createClientTransport, createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUpstreamPolicy } from "./policy.js";

const A = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const FLAKY = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a15";
const SPAN_NAME = "meshwork.users.v1.UserService/GetUser";

/**
 * Client and server in one process, each with its own tracer provider and one in-memory exporter
 * between them, over real HTTP/2 sockets: the client transports of the mesh with the upstream
 * policy outside the client tracing interceptor, as services build them.
 */
describe("trace context and CLIENT spans on calls between services", () => {
  const exporter = new InMemorySpanExporter();
  const upstreamTelemetry = createTelemetry({
    serviceName: "upstream",
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const callerTelemetry = createTelemetry({
    serviceName: "caller",
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  /** Headers of trace context seen by the server, per call. */
  const seen: Array<{ id: string; traceparent: string | null; baggage: string | null }> = [];
  const flaked = new Set<string>();
  let service: Service;
  let url: string;
  let port: number;

  beforeAll(async () => {
    service = createService({
      name: "upstream",
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      telemetry: upstreamTelemetry,
      routes(router) {
        router.service(UserService, {
          async getUser(req, ctx) {
            seen.push({
              id: req.id,
              traceparent: ctx.requestHeader.get("traceparent"),
              baggage: ctx.requestHeader.get("baggage"),
            });
            // UNAVAILABLE once per trace: the policy retries it.
            const key = `${req.id}/${ctx.requestHeader.get("traceparent")?.slice(3, 35)}`;
            if (req.id === FLAKY && !flaked.has(key)) {
              flaked.add(key);
              throw new ConnectError("down for a moment", Code.Unavailable);
            }
            return { user: { id: req.id } };
          },
        });
      },
    });
    ({ url } = await service.start());
    port = Number(new URL(url).port);
  });
  afterAll(async () => {
    await service?.shutdown();
    await callerTelemetry.shutdown();
  });

  const clientOf = (protocol: ClientProtocol, tracer = callerTelemetry) => {
    const policy = createUpstreamPolicy({
      upstream: "users",
      defaultTimeoutMs: 5_000,
      retry: { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 },
      breaker: { consecutiveFailures: 1_000, halfOpenAfterMs: 300 },
      bulkhead: { limit: 64, queue: 64 },
      logger: createLogger({ service: "caller", level: "silent" }),
      meter: callerTelemetry.meter,
    });
    return createClient(
      UserService,
      createClientTransport({
        baseUrl: url,
        protocol,
        telemetry: tracer,
        interceptors: [policy.interceptor],
      }),
    );
  };

  /** Runs `fn` inside a caller span with baggage; returns that span's ids. */
  const asCaller = async (fn: () => Promise<unknown>, tracer = callerTelemetry.tracer) => {
    const bag = propagation.createBaggage({ tenant: { value: "acme" } });
    const span = tracer.startSpan("caller work");
    const ctx = propagation.setBaggage(trace.setSpan(context.active(), span), bag);
    try {
      await context.with(ctx, fn);
    } finally {
      span.end();
    }
    return span.spanContext();
  };

  const spansOf = (traceId: string) =>
    exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
  const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
  const serviceOf = (s: ReadableSpan) => s.resource.attributes["service.name"];

  for (const protocol of ["grpc", "connect"] as const) {
    it(`${protocol}: caller span -> CLIENT span -> SERVER span, with the RPC attributes and the baggage`, async () => {
      const users = clientOf(protocol);
      const caller = await asCaller(() => users.getUser({ id: A }));
      const spans = await waitFor(() => {
        const s = spansOf(caller.traceId);
        return s.length === 3 ? s : undefined;
      });
      const client = spans.find((s) => s.kind === SpanKind.CLIENT) as ReadableSpan;
      const server = spans.find((s) => s.kind === SpanKind.SERVER) as ReadableSpan;
      expect(client.name).toBe(SPAN_NAME);
      expect(serviceOf(client)).toBe("caller");
      expect(parentOf(client)).toBe(caller.spanId);
      expect(serviceOf(server)).toBe("upstream");
      expect(parentOf(server)).toBe(client.spanContext().spanId);
      expect(client.attributes).toMatchObject({
        "rpc.system": protocol === "grpc" ? "grpc" : "connect_rpc",
        "rpc.service": "meshwork.users.v1.UserService",
        "rpc.method": "GetUser",
        "server.address": "127.0.0.1",
        "server.port": port,
      });
      if (protocol === "grpc") expect(client.attributes["rpc.grpc.status_code"]).toBe(0);
      expect(client.status.code).not.toBe(SpanStatusCode.ERROR);
      const call = seen.findLast((s) => s.id === A);
      expect(call?.traceparent).toBe(`00-${caller.traceId}-${client.spanContext().spanId}-01`);
      expect(call?.baggage).toBe("tenant=acme");
    });

    it(`${protocol}: each attempt of a retried call is its own CLIENT span, both children of the caller's`, async () => {
      const users = clientOf(protocol);
      const caller = await asCaller(() => users.getUser({ id: FLAKY }));
      const spans = await waitFor(() => {
        const s = spansOf(caller.traceId);
        return s.length === 5 ? s : undefined;
      });
      const clients = spans
        .filter((s) => s.kind === SpanKind.CLIENT)
        .sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
      const servers = spans.filter((s) => s.kind === SpanKind.SERVER);
      expect(clients).toHaveLength(2);
      expect(servers).toHaveLength(2);
      for (const c of clients) expect(parentOf(c)).toBe(caller.spanId);
      const [first, second] = clients as [ReadableSpan, ReadableSpan];
      expect(first.status.code).toBe(SpanStatusCode.ERROR);
      expect(second.status.code).not.toBe(SpanStatusCode.ERROR);
      if (protocol === "grpc") {
        expect(first.attributes["rpc.grpc.status_code"]).toBe(Code.Unavailable);
        expect(second.attributes["rpc.grpc.status_code"]).toBe(0);
      } else {
        expect(first.attributes["rpc.connect_rpc.error_code"]).toBe("unavailable");
      }
      // Each server span is the child of the attempt that reached it.
      expect(new Set(servers.map(parentOf))).toEqual(new Set(clients.map((c) => c.spanContext().spanId)));
    });
  }

  it("with the id-only tracer the call still carries the trace: its own span id, the sampled flag, the baggage", async () => {
    const quiet = createTelemetry({ serviceName: "quiet" });
    const users = clientOf("grpc", quiet);
    const caller = await asCaller(() => users.getUser({ id: A }), quiet.tracer);
    const server = await waitFor(() => spansOf(caller.traceId).find((s) => s.kind === SpanKind.SERVER));
    const call = seen.findLast((s) => s.id === A);
    const [, traceId, spanId, flags] = call?.traceparent?.split("-") ?? [];
    expect(traceId).toBe(caller.traceId);
    expect(spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(spanId).not.toBe(caller.spanId);
    expect(flags).toBe("01");
    expect(parentOf(server)).toBe(spanId);
    expect(call?.baggage).toBe("tenant=acme");
    // Nothing of the quiet caller was recorded.
    expect(spansOf(caller.traceId).filter((s) => serviceOf(s) === "quiet")).toEqual([]);
  });

  it("a call made outside any span starts a trace of its own, the CLIENT span its root", async () => {
    const users = clientOf("grpc");
    await context.with(context.active(), () => users.getUser({ id: A }));
    const call = seen.findLast((s) => s.id === A);
    const traceId = call?.traceparent?.split("-")[1] ?? "";
    const spans = await waitFor(() => {
      const s = spansOf(traceId);
      return s.length === 2 ? s : undefined;
    });
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    expect(client?.parentSpanContext).toBeUndefined();
  });
});
