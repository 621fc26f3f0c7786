import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createTelemetry } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDiscovery, type Discovery } from "./discovery.js";

const ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

describe("the balanced transport traces each attempt on the endpoint it reached (static endpoints, real HTTP/2)", () => {
  const exporter = new InMemorySpanExporter();
  const caller = createTelemetry({
    serviceName: "caller",
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const services: Service[] = [];
  const ports: number[] = [];
  let discovery: Discovery;

  beforeAll(async () => {
    for (const name of ["a", "b"]) {
      const service = createService({
        name,
        config: testRuntimeConfig(),
        files: [file_meshwork_users_v1_users],
        services: [UserService],
        telemetry: createTelemetry({
          serviceName: name,
          spanProcessors: [new SimpleSpanProcessor(exporter)],
        }),
        routes(router) {
          router.service(UserService, {
            getUser: async (req) => {
              // "a" is always down: a call that lands there is retried, and lands again.
              if (name === "a") throw new ConnectError("down", Code.Unavailable);
              return { user: { id: req.id, displayName: name } };
            },
          });
        },
      });
      services.push(service);
      ports.push((await service.start()).port);
    }
    discovery = createDiscovery(
      {
        natsUrl: "nats://127.0.0.1:1",
        mode: "static",
        bucket: "unused",
        ttlMs: 1_500,
        advertiseHost: undefined,
        upstreams: { users: ports.map((p) => `http://127.0.0.1:${p}`) },
      },
      { service: "caller", telemetry: caller },
    );
    const endpoints = await discovery.endpoints();
    await waitFor(() => endpoints.healthy("users").length === 2, { what: "both endpoints healthy" });
  });
  afterAll(async () => {
    await discovery?.close();
    for (const s of services) await s.shutdown();
  });

  it("one CLIENT span per attempt, each naming its endpoint, children of the caller's span; the server spans their children", async () => {
    // Retries of UNAVAILABLE until an answer, as a policy would (it is run around the endpoint choice).
    const retry: Interceptor = (next) => async (req) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await next(req);
        } catch (err) {
          if (attempt >= 20 || ConnectError.from(err).code !== Code.Unavailable) throw err;
        }
      }
    };
    const client = createClient(UserService, await discovery.transport("users", { interceptors: [retry] }));
    // Until one call has met "a" at least once before reaching "b".
    let root: ReturnType<typeof caller.tracer.startSpan> | undefined;
    let clients: ReadableSpan[] = [];
    for (let i = 0; i < 50 && clients.length < 2; i++) {
      const span = caller.tracer.startSpan("caller work");
      root = span;
      const { user } = await context.with(trace.setSpan(context.active(), span), () =>
        client.getUser({ id: ID }),
      );
      span.end();
      expect(user?.displayName).toBe("b");
      clients = exporter
        .getFinishedSpans()
        .filter((s) => s.kind === SpanKind.CLIENT && s.spanContext().traceId === span.spanContext().traceId);
    }
    expect(clients.length).toBeGreaterThanOrEqual(2);
    const traceId = root?.spanContext().traceId;
    for (const c of clients) {
      expect(c.parentSpanContext?.spanId).toBe(root?.spanContext().spanId);
      expect(c.attributes["rpc.system"]).toBe("grpc");
      expect(c.attributes["server.address"]).toBe("127.0.0.1");
    }
    const byPort = (p: number | undefined) => clients.filter((c) => c.attributes["server.port"] === p);
    expect(byPort(ports[1])).toHaveLength(1);
    expect(byPort(ports[0]).length).toBe(clients.length - 1);
    for (const failed of byPort(ports[0])) {
      expect(failed.status.code).toBe(SpanStatusCode.ERROR);
      expect(failed.attributes["rpc.grpc.status_code"]).toBe(Code.Unavailable);
    }
    const servers = await waitFor(() => {
      const s = exporter
        .getFinishedSpans()
        .filter((x) => x.kind === SpanKind.SERVER && x.spanContext().traceId === traceId);
      return s.length === clients.length ? s : undefined;
    });
    expect(new Set(servers.map((s) => s.parentSpanContext?.spanId))).toEqual(
      new Set(clients.map((c) => c.spanContext().spanId)),
    );
  });
});
