import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OrderService, OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService, PaymentState } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { createRecordSigner, registerInstance } from "@meshwork/discovery";
import { connectNats } from "@meshwork/events";
import { checkConsistency } from "@meshwork/orders";
import { createAssertionSigner, privateKeyFrom } from "@meshwork/runtime";
import { waitFor } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Mesh, startMesh } from "./mesh.js";

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );

describe("orders: the placement saga through the gateway (every service a real process)", () => {
  let mesh: Mesh;
  let admin: Awaited<ReturnType<Mesh["login"]>>;
  let alice: Awaited<ReturnType<Mesh["login"]>>;
  const healthy = { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 50_000n };

  beforeAll(async () => {
    mesh = await startMesh({
      orders: {
        SAGA_LEASE_MS: "1500",
        SAGA_POLL_MS: "100",
        SAGA_MAX_ATTEMPTS: "3",
        SAGA_RETRY_INITIAL_MS: "50",
        SAGA_RETRY_MAX_MS: "200",
        UPSTREAM_BREAKER_FAILURES: "3",
        UPSTREAM_BREAKER_HALF_OPEN_MS: "1000",
        // Payments hard down below cancels the order once it has been unavailable this long.
        SAGA_TRANSIENT_BUDGET_MS: "1000",
      },
      payments: { PAYMENTS_DECLINE_ABOVE_MINOR: "50000" },
    });
    admin = await mesh.admin();
    alice = await mesh.login("alice@example.com");
    await mesh.routable("orders");
  });
  afterEach((ctx) => {
    // A failure here is often a loaded machine's: print what the processes said, to read it later.
    if (ctx.task.result?.state === "fail") console.error(mesh?.diagnose());
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  const product = async (stock: number, priceMinor = 1_000n) => {
    const { product } = await mesh.clients.inventory.createProduct(
      {
        sku: `SKU-${randomUUID().slice(0, 8)}`,
        name: "Thing",
        price: { amountMinor: priceMinor, currency: "EUR" },
        initialStock: BigInt(stock),
      },
      admin.auth,
    );
    return product?.id ?? "";
  };
  const place = (who: { auth: object }, items: Array<[string, number]>, key = randomUUID()) =>
    mesh.clients.orders.placeOrder(
      {
        idempotencyKey: key,
        items: items.map(([productId, quantity]) => ({ productId, quantity: BigInt(quantity) })),
      },
      who.auth,
    );
  const settled = (who: { auth: object }, id: string) =>
    waitFor(
      async () => {
        const { order } = await mesh.clients.orders.getOrder({ id }, who.auth);
        return order && (order.status === OrderStatus.CONFIRMED || order.status === OrderStatus.CANCELLED)
          ? order
          : undefined;
      },
      { what: `order ${id} to finish`, timeoutMs: 30_000 },
    );
  const stock = async (id: string) => (await mesh.clients.inventory.getProduct({ id })).product;
  const consistent = async () =>
    expect(await checkConsistency({ ...mesh.clients, admin: admin.auth })).toEqual([]);

  it("confirms an order, and WatchOrder through the gateway sees every transition", async () => {
    const mug = await product(5, 1_200n);
    // Payments answers slowly, so the watch is open well before the payment steps.
    await mesh.clients.payments.setFaults({ faults: { ...healthy, addedLatencyMs: 300 } }, admin.auth);
    const { order } = await place(alice, [[mug, 2]]);
    expect(order).toMatchObject({ userId: alice.id, total: { amountMinor: 2_400n, currency: "EUR" } });
    const seen: OrderStatus[] = [];
    try {
      for await (const { order: o } of mesh.clients.orders.watchOrder({ id: order?.id ?? "" }, alice.auth)) {
        seen.push(o?.status ?? OrderStatus.UNSPECIFIED);
      }
    } finally {
      await mesh.clients.payments.setFaults({ faults: healthy }, admin.auth);
    }
    // The watch starts at the status it finds (pending, or stock reserved already), then every
    // later one, and ends at the terminal one.
    const all = [
      OrderStatus.PENDING,
      OrderStatus.STOCK_RESERVED,
      OrderStatus.PAYMENT_AUTHORIZED,
      OrderStatus.CONFIRMED,
    ];
    expect(all.indexOf(seen[0] as OrderStatus)).toBeLessThanOrEqual(1);
    expect(all.slice(all.indexOf(seen[0] as OrderStatus))).toEqual(seen);
    expect(await stock(mug)).toMatchObject({ onHand: 3n, reserved: 0n });
    const { payment } = await mesh.clients.payments.getPayment({ paymentId: order?.id ?? "" }, admin.auth);
    expect(payment).toMatchObject({ state: PaymentState.CAPTURED, amount: { amountMinor: 2_400n } });
    // The user hears about it (OrderConfirmed through the outbox to notifications).
    await waitFor(async () =>
      (
        await mesh.clients.notifications.listNotifications({ userId: alice.id }, alice.auth)
      ).notifications.some((n) => n.kind === "order.confirmed" && n.body.includes(order?.id ?? "?")),
    );
    await consistent();
  });

  it("cancels with the reason and gives everything back: no stock, a declined payment, payments down", async () => {
    const scarce = await product(1);
    const noStock = (await place(alice, [[scarce, 2]])).order;
    const a = await settled(alice, noStock?.id ?? "");
    expect(a.status).toBe(OrderStatus.CANCELLED);
    expect(a.cancelReason).toBe(
      `out of stock: insufficient stock for product ${scarce}: requested 2, available 1`,
    );

    const pricey = await product(3, 60_000n); // over the payments decline limit
    const declined = (await place(alice, [[pricey, 1]])).order;
    const b = await settled(alice, declined?.id ?? "");
    expect(b.cancelReason).toMatch(
      /^payment declined: payment .* declined: amount 60000 is over the limit of 50000$/,
    );
    expect(await stock(pricey)).toMatchObject({ onHand: 3n, reserved: 0n });

    // Payments hard down: the step keeps failing, the caller's breaker opens, the order is cancelled.
    await mesh.clients.payments.setFaults({ faults: { ...healthy, hardDown: true } }, admin.auth);
    try {
      const widget = await product(4);
      const down = (await place(alice, [[widget, 1]])).order;
      const c = await settled(alice, down?.id ?? "");
      expect(c.status).toBe(OrderStatus.CANCELLED);
      expect(c.cancelReason).toMatch(/^payments unavailable: /);
      expect(await stock(widget)).toMatchObject({ onHand: 4n, reserved: 0n });
      await waitFor(
        () =>
          mesh.procs.orders
            .logs()
            .some(
              (l) =>
                l.msg === "circuit breaker state changed" && l.upstream === "payments" && l.state === "open",
            ),
        {
          what: "the payments breaker to open",
        },
      );
    } finally {
      await mesh.clients.payments.setFaults({ faults: healthy }, admin.auth);
    }
    // Payments is back: once the breaker's cool-down has passed, orders confirm again.
    const after = await product(10);
    await waitFor(
      async () =>
        (await settled(alice, (await place(alice, [[after, 1]])).order?.id ?? "")).status ===
        OrderStatus.CONFIRMED,
      { what: "an order to confirm once payments is back" },
    );
    await waitFor(async () =>
      (
        await mesh.clients.notifications.listNotifications({ userId: alice.id }, alice.auth)
      ).notifications.some((n) => n.kind === "order.cancelled" && n.body.includes("out of stock")),
    );
    await consistent();
  });

  it("places one order for one idempotency key, even sent twice at once; another request with it is refused", async () => {
    const p = await product(10);
    const key = randomUUID();
    const [x, y] = await Promise.all([place(alice, [[p, 1]], key), place(alice, [[p, 1]], key)]);
    expect(x.order?.id).toBe(y.order?.id);
    const again = await place(alice, [[p, 1]], key);
    expect(again.order?.id).toBe(x.order?.id);
    const other = await failure(place(alice, [[p, 2]], key));
    expect(other.code).toBe(Code.AlreadyExists);
    const list = await mesh.clients.orders.listOrders({}, alice.auth);
    expect(list.orders.filter((o) => o.id === x.order?.id)).toHaveLength(1);
    expect((await settled(alice, x.order?.id ?? "")).status).toBe(OrderStatus.CONFIRMED);
    expect((await stock(p))?.onHand).toBe(9n);
  });

  it("confirms exactly one of several concurrent orders for the last unit", async () => {
    const last = await product(1);
    const buyers = await Promise.all(
      ["b1", "b2", "b3", "b4", "b5"].map((n) => mesh.login(`${n}@example.com`)),
    );
    const placed = await Promise.all(buyers.map((b) => place(b, [[last, 1]])));
    const outcomes = await Promise.all(
      placed.map((r, n) => settled(buyers[n] as typeof alice, r.order?.id ?? "")),
    );
    expect(outcomes.filter((o) => o.status === OrderStatus.CONFIRMED)).toHaveLength(1);
    expect(outcomes.filter((o) => o.status === OrderStatus.CANCELLED)).toHaveLength(4);
    expect(await stock(last)).toMatchObject({ onHand: 0n, reserved: 0n });
    await consistent();
  });

  it("shows a user only their own orders, and needs the gateway's verified identity", async () => {
    const p = await product(2);
    const mine = (await place(alice, [[p, 1]])).order;
    const bob = await mesh.login("bob@example.com");
    expect((await failure(mesh.clients.orders.getOrder({ id: mine?.id ?? "" }, bob.auth))).code).toBe(
      Code.NotFound,
    );
    expect((await mesh.clients.orders.listOrders({}, bob.auth)).orders.map((o) => o.id)).not.toContain(
      mine?.id,
    );
    expect((await failure(mesh.clients.orders.getOrder({ id: mine?.id ?? "" }))).code).toBe(
      Code.Unauthenticated,
    );
    // Straight to orders' own port, past the gateway: an identity header grants nothing.
    const direct = createClient(OrderService, createGrpcTransport({ baseUrl: mesh.urls.orders }));
    const forged = { headers: { "x-meshwork-subject": alice.id, "x-meshwork-roles": "admin" } };
    const refused = await failure(direct.listOrders({ allUsers: true }, forged));
    expect(refused.code).toBe(Code.Unauthenticated);
    expect(refused.rawMessage).toMatch(/identity headers are not accepted/);
    expect((await failure(direct.getOrder({ id: mine?.id ?? "" }))).code).toBe(Code.Unauthenticated);
    const bad = await failure(
      mesh.clients.orders.placeOrder({ idempotencyKey: "short", items: [] }, alice.auth),
    );
    expect(bad.code).toBe(Code.InvalidArgument);
    await settled(alice, mine?.id ?? "");
  });

  it("routes only to registry entries signed by their own service (a fake `users` endpoint is ignored)", async () => {
    // The shared NATS takes anyone's writes: what keeps a fake endpoint out is its signature.
    const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "e2e-impostor");
    const entry = (address: string, signWith?: string) =>
      registerInstance({
        nc,
        bucket: mesh.bucket,
        ttlMs: 2_000,
        service: "users",
        instanceId: randomUUID(),
        address,
        protocols: ["grpc"],
        version: "6.6.6",
        sign: signWith
          ? createRecordSigner(privateKeyFrom(mesh.keys[signWith as "users"].privateKey))
          : undefined,
      });
    const unsigned = await entry("127.0.0.1:6661");
    const byOrders = await entry("127.0.0.1:6662", "orders");
    const byUsers = await entry("127.0.0.1:6663", "users"); // users' own key: taken (not SERVING)
    try {
      await waitFor(() => mesh.endpoints("users").some((e) => e.url === "http://127.0.0.1:6663"), {
        what: "the entry users signed at the gateway",
      });
      const urls = mesh.endpoints("users").map((e) => e.url);
      expect(urls).not.toContain("http://127.0.0.1:6661");
      expect(urls).not.toContain("http://127.0.0.1:6662");
    } finally {
      await Promise.all([unsigned.stop(), byOrders.stop(), byUsers.stop()]);
      await nc.close();
    }
  });

  it("cancels a pending order on request, before the payment is captured", async () => {
    await mesh.clients.payments.setFaults({ faults: { ...healthy, addedLatencyMs: 400 } }, admin.auth);
    try {
      const p = await product(3);
      const { order } = await place(alice, [[p, 1]]);
      await mesh.clients.orders.cancelOrder({ id: order?.id ?? "" }, alice.auth);
      const done = await settled(alice, order?.id ?? "");
      expect(done).toMatchObject({
        status: OrderStatus.CANCELLED,
        cancelReason: "cancelled by the customer",
      });
      expect(await stock(p)).toMatchObject({ onHand: 3n, reserved: 0n });
      const confirmed = (await place(alice, [[p, 1]])).order;
      await settled(alice, confirmed?.id ?? "");
      const late = await failure(mesh.clients.orders.cancelOrder({ id: confirmed?.id ?? "" }, alice.auth));
      expect(late.code).toBe(Code.FailedPrecondition);
    } finally {
      await mesh.clients.payments.setFaults({ faults: healthy }, admin.auth);
    }
    await consistent();
  });

  it("finishes every order when the orders process is SIGKILLed at step boundaries and restarted", async () => {
    await mesh.clients.payments.setFaults({ faults: { ...healthy, addedLatencyMs: 150 } }, admin.auth);
    try {
      const p = await product(100);
      const ids: string[] = [];
      for (const boundary of ["reserve", "authorize", "capture", "reserve", "authorize"]) {
        const batch = await Promise.all(Array.from({ length: 5 }, () => place(alice, [[p, 1]])));
        ids.push(...batch.map((r) => r.order?.id ?? ""));
        // Kill the moment a saga records that boundary (its step just committed).
        await mesh.procs.orders.waitForLog((l) => l.msg === "saga step done" && l.step === boundary, 30_000);
        await mesh.procs.orders.stop("SIGKILL");
        await mesh.start("orders");
        await mesh.routable("orders");
      }
      const outcomes = await Promise.all(ids.map((id) => settled(alice, id)));
      expect(
        outcomes.every((o) => o.status === OrderStatus.CONFIRMED || o.status === OrderStatus.CANCELLED),
      ).toBe(true);
      await consistent();
    } finally {
      await mesh.clients.payments.setFaults({ faults: healthy }, admin.auth);
    }
  }, 180_000);

  it("the checker names a violation when the services disagree; every user's orders are for admins only", async () => {
    const denied = await failure(mesh.clients.orders.listOrders({ allUsers: true }, alice.auth));
    expect(denied.code).toBe(Code.PermissionDenied);
    // Stock leaving through an adjustment is accounted for (received goes down with it).
    const p = await product(5);
    await mesh.clients.inventory.adjustStock({ productId: p, delta: -1n, reason: "damaged" }, admin.auth);
    await consistent();
    // A refund behind the orders service's back (straight to payments, past the edge) is not.
    const { order } = await place(alice, [[p, 1]]);
    expect((await settled(alice, order?.id ?? "")).status).toBe(OrderStatus.CONFIRMED);
    const direct = createClient(PaymentService, createGrpcTransport({ baseUrl: mesh.urls.payments }));
    // Payments answers only a caller with the role `service`: without an assertion, refused...
    expect((await failure(direct.refundPayment({ paymentId: order?.id ?? "" }))).code).toBe(
      Code.Unauthenticated,
    );
    // ...with one signed by a service's key (orders', as a rogue holder of it would), done.
    const asOrders = createAssertionSigner({
      issuer: "orders",
      privateKey: privateKeyFrom(mesh.keys.orders.privateKey),
    }).sign({ subject: "orders", roles: ["service"] }, "payments");
    await direct.refundPayment(
      { paymentId: order?.id ?? "" },
      { headers: { "x-meshwork-identity": asOrders } },
    );
    expect(await checkConsistency({ ...mesh.clients, admin: admin.auth })).toEqual([
      `order ${order?.id} confirmed, but its payment is refunded`,
    ]);
  });

  it("the checker compares the payments table with the provider's ledger, which survives a restart of payments", async () => {
    const p = await product(5);
    const { order } = await place(alice, [[p, 1]]);
    const id = order?.id ?? "";
    expect((await settled(alice, id)).status).toBe(OrderStatus.CONFIRMED);
    const ledger = async () =>
      (await mesh.clients.payments.getProviderLedger({ paymentId: id }, admin.auth)).entries.map(
        (e) => e.operation,
      );
    expect(await ledger()).toEqual(["authorize", "capture"]);
    // Plant a disagreement in the provider's books, then restart payments so it reads them again.
    const sql = postgres(mesh.dbs.payments.url, { max: 1, onnotice: () => {} });
    try {
      await sql`delete from provider_ledger where payment_id = ${id} and operation = 'capture'`;
    } finally {
      await sql.end();
    }
    await mesh.procs.payments.stop();
    await mesh.start("payments");
    await mesh.routable("payments");
    expect(await ledger()).toEqual(["authorize"]);
    expect(await checkConsistency({ ...mesh.clients, admin: admin.auth })).toContain(
      `order ${id}: payments says captured, but the provider's ledger says authorized`,
    );
  });
});
