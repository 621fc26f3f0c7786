import { randomBytes, randomUUID } from "node:crypto";
import http2 from "node:http2";
import type net from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@meshwork/contracts/grpc/health/v1/health";
import { OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { createGateway, loadConfig } from "@meshwork/gateway/embedded";
import { createLogger } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { type Receiver, type StoredSpan, startReceiver } from "@meshwork/tracestore";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Mesh, startMesh } from "./mesh.js";

/**
 * Issue 15's promise, checked from what the embedded receiver stored (decoded spans, not log
 * text): one PlaceOrder through the gateway is ONE trace across every hop.
 */
describe("tracing: a PlaceOrder through the gateway is one trace across every process (real processes, real receiver)", () => {
  let receiver: Receiver;
  let mesh: Mesh;
  /** The JSON lines the gateway (in this process) logs. */
  const gatewayLines: string[] = [];

  beforeAll(async () => {
    receiver = await startReceiver({ port: 0 });
    const otel = {
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: "200",
    };
    mesh = await startMesh(
      {},
      {
        common: otel,
        gateway: otel,
        gatewayLogger: createLogger({
          service: "gateway",
          level: "info",
          destination: { write: (line: string) => gatewayLines.push(line) },
        }),
      },
    );
    await mesh.routable("orders");
  });
  afterAll(async () => {
    await mesh?.stop();
    await receiver?.close();
  });

  it("has spans from the gateway, orders, inventory, payments, Postgres, the outbox and the notifications consumer, each under its parent", async () => {
    const admin = await mesh.admin();
    const bob = await mesh.login(`bob-${randomUUID().slice(0, 8)}@example.com`);
    const { product } = await mesh.clients.inventory.createProduct(
      {
        sku: `SKU-${randomUUID().slice(0, 8)}`,
        name: "Traced mug",
        price: { amountMinor: 1_200n, currency: "EUR" },
        initialStock: 5n,
      },
      admin.auth,
    );
    // The caller's own span: the trace is the caller's, and the gateway's span is its child.
    const traceId = randomBytes(16).toString("hex");
    const callerSpanId = randomBytes(8).toString("hex");
    const { order } = await mesh.clients.orders.placeOrder(
      { idempotencyKey: randomUUID(), items: [{ productId: product?.id ?? "", quantity: 1n }] },
      { headers: { ...bob.auth.headers, traceparent: `00-${traceId}-${callerSpanId}-01` } },
    );
    const id = order?.id ?? "";
    await waitFor(
      async () =>
        (await mesh.clients.orders.getOrder({ id }, bob.auth)).order?.status === OrderStatus.CONFIRMED,
      { what: "the order to be confirmed", timeoutMs: 60_000 },
    );

    const has = (spans: StoredSpan[], test: (s: StoredSpan) => boolean) => spans.some(test);
    const serverOf = (service: string) => (s: StoredSpan) => s.service === service && s.kind === "server";
    const spans = await waitFor(
      () => {
        const all = receiver.traces.getTrace(traceId)?.spans ?? [];
        // The gateway runs in this process and flushes its spans on its own schedule (5 s).
        const complete =
          has(all, serverOf("gateway")) &&
          has(all, serverOf("inventory")) &&
          has(all, serverOf("payments")) &&
          has(all, (s) => s.service === "notifications" && s.kind === "consumer") &&
          has(all, (s) => s.service === "orders" && s.kind === "producer");
        // Each process exports in batches of its own: a child can arrive before its parent (seen at
        // load 30: inventory's ReserveStock before orders' CLIENT span). Wait for every parent.
        const present = new Set(all.map((s) => s.spanId));
        const parented = all.every(
          (s) => (s.service === "gateway" && s.kind === "server") || present.has(s.parentSpanId ?? ""),
        );
        return complete && parented ? all : undefined;
      },
      { what: `every process's spans in trace ${traceId}`, timeoutMs: 60_000 },
    );

    const services = new Set(spans.map((s) => s.service));
    for (const s of ["gateway", "orders", "inventory", "payments", "notifications"])
      expect(services).toContain(s);

    // Every span hangs under a span of this trace, but the gateway's, which hangs under the caller's.
    const ids = new Set(spans.map((s) => s.spanId));
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    for (const s of spans) {
      if (s.service === "gateway" && s.kind === "server") expect(s.parentSpanId).toBe(callerSpanId);
      else
        expect(ids.has(s.parentSpanId ?? ""), `${s.service} ${s.name} has its parent in the trace`).toBe(
          true,
        );
    }
    // Orders' server span is the child of the gateway's.
    const ordersServer = spans.find((s) => s.service === "orders" && s.kind === "server");
    expect(byId.get(ordersServer?.parentSpanId ?? "")?.service).toBe("gateway");
    // Inventory and payments were called by orders: each server span is the child of an orders
    // CLIENT span carrying the RPC attributes.
    for (const callee of ["inventory", "payments"]) {
      const server = spans.find(serverOf(callee));
      const client = byId.get(server?.parentSpanId ?? "");
      expect(client?.service).toBe("orders");
      expect(client?.kind).toBe("client");
      expect(client?.attributes["rpc.service"]).toBe(
        `meshwork.${callee}.v1.${callee === "inventory" ? "InventoryService" : "PaymentService"}`,
      );
      expect(client?.attributes["rpc.method"]).toBeTypeOf("string");
    }
    // Postgres statements are spans of their own, with the statement and no values.
    const statements = spans.filter(
      (s) => s.kind === "client" && s.attributes["db.system.name"] === "postgresql",
    );
    expect(new Set(statements.map((s) => s.service))).toContain("orders");
    for (const s of statements) {
      expect(s.attributes["db.query.text"]).toBeTypeOf("string");
      expect(String(s.attributes["db.query.text"])).not.toContain(bob.id);
    }
    // The outbox publish of orders and the consumer in notifications that applied the event.
    const consumer = spans.find((s) => s.service === "notifications" && s.kind === "consumer");
    const link = consumer?.parentSpanId ?? consumer?.links[0]?.spanId;
    expect(byId.get(link ?? "")?.service).toBe("orders");
    // As the messaging conventions say: the process span links to the publish span (its parent).
    expect(byId.get(consumer?.links[0]?.spanId ?? "")?.kind).toBe("producer");

    // The gateway's SERVER span is named after the method, and each attempt upstream is a
    // CLIENT span under it (PlaceOrder is idempotent by its key: on a loaded machine orders may
    // answer UNAVAILABLE once and the gateway try again), whose context orders received.
    const gatewayServer = spans.find(serverOf("gateway"));
    expect(gatewayServer?.name).toBe("meshwork.orders.v1.OrderService/PlaceOrder");
    expect(gatewayServer?.attributes["rpc.method"]).toBe("PlaceOrder");
    const attempts = spans
      .filter((s) => s.service === "gateway" && s.kind === "client")
      .sort((a, b) => Number(a.attributes["meshwork.attempt"]) - Number(b.attributes["meshwork.attempt"]));
    expect(attempts.length).toBeGreaterThanOrEqual(1);
    for (const a of attempts) expect(a.parentSpanId).toBe(gatewayServer?.spanId);
    expect(attempts.at(-1)?.attributes["rpc.grpc.status_code"]).toBe(0);
    for (const s of spans.filter(serverOf("orders"))) {
      const attempt = byId.get(s.parentSpanId ?? "");
      expect(attempt?.service).toBe("gateway");
      expect(attempt?.kind).toBe("client");
    }

    // Log lines: every process of the request wrote lines carrying its trace id, each under a
    // span of that process in the trace (read from the JSON lines each process wrote).
    const linesOf = (service: string) =>
      (service === "gateway"
        ? gatewayLines.map((l) => JSON.parse(l) as Record<string, unknown>)
        : mesh.procs[service as keyof Mesh["procs"]].logs()
      ).filter((l) => l.trace_id === traceId);
    // Read afresh: a line may come from a span exported after the snapshot above (the
    // notifications consumer applies OrderConfirmed after OrderPlaced, each in its own span).
    const spanIdsOf = (service: string) =>
      new Set(
        (receiver.traces.getTrace(traceId)?.spans ?? [])
          .filter((s) => s.service === service)
          .map((s) => s.spanId),
      );
    for (const service of ["gateway", "orders", "inventory", "payments", "notifications"]) {
      const lines = await waitFor(
        () => {
          const found = linesOf(service);
          return found.length > 0 ? found : undefined;
        },
        { what: `a log line of ${service} with trace id ${traceId}`, timeoutMs: 10_000 },
      );
      for (const line of lines) {
        expect(line.service, JSON.stringify(line)).toBe(service);
        const under = await waitFor(() => spanIdsOf(service).has(String(line.span_id)) || undefined, {
          what: `the span of ${service} line ${JSON.stringify(line)} in trace ${traceId}`,
          timeoutMs: 15_000,
        }).catch(() => false);
        expect(under, `${service} line ${JSON.stringify(line)}`).toBe(true);
      }
    }
  });

  it("shows each attempt of a retried call through the gateway as a CLIENT span of its own", async () => {
    // An instance that is up (SERVING to health checks) but refuses calls with UNAVAILABLE, as
    // an overloaded one does, first in the cluster: the first attempt fails, the retry goes to
    // the users process.
    const refusing = http2.createServer(
      connectNodeAdapter({
        routes(router) {
          router.service(Health, {
            check: () => ({ status: HealthCheckResponse_ServingStatus.SERVING }),
            async *watch(_req, ctx) {
              yield { status: HealthCheckResponse_ServingStatus.SERVING };
              await new Promise((r) => ctx.signal.addEventListener("abort", r));
            },
          });
          router.service(UserService, {
            getUser() {
              throw new ConnectError("overloaded, try another instance", Code.Unavailable);
            },
          });
        },
      }),
    );
    await new Promise<void>((r) => refusing.listen(0, "127.0.0.1", r));
    const refusingPort = (refusing.address() as net.AddressInfo).port;
    const usersPort = Number(new URL(mesh.urls.users).port);
    const gateway = createGateway({
      config: loadConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        UPSTREAMS: `users=http://127.0.0.1:${refusingPort},${mesh.urls.users}`,
        JWKS_URL: `${mesh.urls.users}/.well-known/jwks.json`,
        // The mesh's gateway key: its services trust assertions signed with it only.
        IDENTITY_KEY: mesh.keys.gateway.privateKey,
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: "200",
      }),
    });
    const { url } = await gateway.start();
    try {
      const bob = await mesh.login(`retry-${randomUUID().slice(0, 8)}@example.com`);
      const traceId = randomBytes(16).toString("hex");
      const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
      const res = await users.getUser(
        { id: bob.id },
        {
          headers: { ...bob.auth.headers, traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` },
        },
      );
      expect(res.user?.id).toBe(bob.id);

      const spans = await waitFor(
        () => {
          const all = receiver.traces.getTrace(traceId)?.spans ?? [];
          // The gateway (in this process) flushes its spans every 5 s, the server span last.
          const done =
            all.some((s) => s.service === "gateway" && s.kind === "server") &&
            all.some((s) => s.service === "users" && s.kind === "server");
          return done ? all : undefined;
        },
        { what: `the gateway's and users' spans in trace ${traceId}`, timeoutMs: 30_000 },
      );
      const server = spans.find((s) => s.service === "gateway" && s.kind === "server");
      expect(server?.name).toBe("meshwork.users.v1.UserService/GetUser");
      const attempts = spans
        .filter((s) => s.service === "gateway" && s.kind === "client")
        .sort((a, b) => Number(a.attributes["meshwork.attempt"]) - Number(b.attributes["meshwork.attempt"]));
      expect(attempts.map((a) => a.attributes["meshwork.attempt"])).toEqual([1, 2]);
      for (const a of attempts) {
        expect(a.name).toBe("meshwork.users.v1.UserService/GetUser");
        expect(a.parentSpanId).toBe(server?.spanId);
        expect(a.attributes["rpc.system"]).toBe("grpc");
        expect(a.attributes["rpc.service"]).toBe("meshwork.users.v1.UserService");
        expect(a.attributes["rpc.method"]).toBe("GetUser");
        expect(a.attributes["server.address"]).toBe("127.0.0.1");
      }
      const [refused, answered] = attempts;
      expect(refused?.attributes["server.port"]).toBe(refusingPort);
      expect(refused?.attributes["rpc.grpc.status_code"]).toBe(14);
      expect(refused?.status.code).toBe("error");
      expect(answered?.attributes["server.port"]).toBe(usersPort);
      expect(answered?.attributes["rpc.grpc.status_code"]).toBe(0);
      expect(answered?.status.code).not.toBe("error");
      // The users process got the second attempt's context: its SERVER span is that span's child.
      const usersServer = spans.find((s) => s.service === "users" && s.kind === "server");
      expect(usersServer?.parentSpanId).toBe(answered?.spanId);
    } finally {
      await gateway.stop();
      refusing.close();
    }
  });
});
