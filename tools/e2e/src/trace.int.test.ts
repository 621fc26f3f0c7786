import { randomBytes, randomUUID } from "node:crypto";
import { OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
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

  beforeAll(async () => {
    receiver = await startReceiver({ port: 0 });
    const otel = {
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: "200",
    };
    mesh = await startMesh({}, { common: otel, gateway: otel });
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
        return complete ? all : undefined;
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
  });
});
