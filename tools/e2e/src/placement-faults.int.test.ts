import { randomUUID } from "node:crypto";
import { OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentState } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { checkConsistency } from "@meshwork/orders";
import { waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Mesh, startMesh } from "./mesh.js";

/** Small enough for a test, far above what the old attempts lasted (5 tries, about 1.5 s). */
const BUDGET_MS = 20_000;

describe("orders: upstream outages shorter than the transient budget delay orders, longer ones cancel (real processes)", () => {
  let mesh: Mesh;
  let admin: Awaited<ReturnType<Mesh["login"]>>;
  let bob: Awaited<ReturnType<Mesh["login"]>>;
  const healthy = { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 50_000n };

  beforeAll(async () => {
    mesh = await startMesh({
      // The default step retries (SAGA_MAX_ATTEMPTS 5, 100 ms to 2 s): they used to give up after
      // about 1.5 s. The breaker stays open longer than that.
      orders: {
        SAGA_LEASE_MS: "1500",
        SAGA_POLL_MS: "100",
        SAGA_TRANSIENT_BUDGET_MS: String(BUDGET_MS),
        UPSTREAM_BREAKER_HALF_OPEN_MS: "2000",
      },
      payments: { PAYMENTS_DECLINE_ABOVE_MINOR: "50000" },
    });
    admin = await mesh.admin();
    bob = await mesh.login("bob@example.com");
    await mesh.routable("orders");
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
  const place = async (productId: string) =>
    (
      await mesh.clients.orders.placeOrder(
        { idempotencyKey: randomUUID(), items: [{ productId, quantity: 1n }] },
        bob.auth,
      )
    ).order?.id ?? "";
  const order = async (id: string) => (await mesh.clients.orders.getOrder({ id }, bob.auth)).order;
  const settled = (id: string) =>
    waitFor(
      async () => {
        const o = await order(id);
        return o && (o.status === OrderStatus.CONFIRMED || o.status === OrderStatus.CANCELLED)
          ? o
          : undefined;
      },
      { what: `order ${id} to finish`, timeoutMs: 60_000 },
    );
  /** The orders log lines about `sagaId` with message `msg`. */
  const logged = (sagaId: string, msg: string) =>
    mesh.procs.orders.logs().filter((l) => l.saga_id === sagaId && l.msg === msg);
  const cancellation = (id: string) =>
    waitFor(
      async () =>
        (await mesh.clients.notifications.listNotifications({ userId: bob.id }, bob.auth)).notifications.find(
          (n) => n.kind === "order.cancelled" && n.body.includes(id),
        ),
      { what: `the cancellation notice of ${id}` },
    );
  const consistent = async () =>
    expect(await checkConsistency({ ...mesh.clients, admin: admin.auth })).toEqual([]);

  it("confirms an order whose payments restart (SIGKILL) outlasts the old attempts but not the budget", async () => {
    const p = await product(5);
    await mesh.procs.payments.stop("SIGKILL");
    const id = await place(p);
    // More failed authorizations than SAGA_MAX_ATTEMPTS: the old saga had cancelled the order.
    await waitFor(() => logged(id, "saga step unavailable: will retry").length >= 5, {
      what: "five failed authorizations",
      timeoutMs: BUDGET_MS,
    });
    expect((await order(id))?.status).toBe(OrderStatus.STOCK_RESERVED);
    await mesh.start("payments");
    const done = await settled(id);
    expect({ status: done.status, cancelReason: done.cancelReason }).toEqual({
      status: OrderStatus.CONFIRMED,
      cancelReason: "",
    });
    await mesh.routable("payments");
    const { payment } = await mesh.clients.payments.getPayment({ paymentId: id }, admin.auth);
    expect(payment?.state).toBe(PaymentState.CAPTURED);
    await consistent();
  }, 90_000);

  it("cancels once payments stays unavailable beyond the budget; nothing was charged", async () => {
    const p = await product(5);
    await mesh.clients.payments.setFaults({ faults: { ...healthy, hardDown: true } }, admin.auth);
    let id = "";
    const placed = Date.now();
    try {
      id = await place(p);
      const done = await settled(id);
      expect(done.status).toBe(OrderStatus.CANCELLED);
      expect(done.cancelReason).toMatch(/^payments unavailable: /);
      expect(Date.now() - placed).toBeGreaterThanOrEqual(BUDGET_MS);
      expect(logged(id, "saga step unavailable beyond its budget: compensating")).toHaveLength(1);
    } finally {
      await mesh.clients.payments.setFaults({ faults: healthy }, admin.auth);
    }
    expect((await cancellation(id)).body).toBe(
      `Your order ${id} was cancelled (${(await order(id))?.cancelReason}); nothing was charged.`,
    );
    expect((await mesh.clients.inventory.getProduct({ id: p })).product).toMatchObject({
      onHand: 5n,
      reserved: 0n,
    });
  }, 90_000);

  it("still cancels a declined payment at once, with no wait", async () => {
    const p = await product(5, 60_000n); // over the decline limit
    const id = await place(p);
    const done = await settled(id);
    expect(done.status).toBe(OrderStatus.CANCELLED);
    expect(done.cancelReason).toMatch(/^payment declined: /);
    expect(logged(id, "saga step refused: compensating")).toHaveLength(1);
    expect(logged(id, "saga step unavailable: will retry")).toHaveLength(0);
  });

  it("says the payment was refunded when it was captured and then given back", async () => {
    const p = await product(5);
    // Slow payments: inventory is killed after the reservation, before the capture's commit.
    await mesh.clients.payments.setFaults({ faults: { ...healthy, addedLatencyMs: 1_000 } }, admin.auth);
    let id = "";
    try {
      id = await place(p);
      await mesh.procs.orders.waitForLog((l) => l.saga_id === id && l.msg === "saga step done", 30_000);
      await mesh.procs.inventory.stop("SIGKILL");
      // The payment is captured; committing the stock fails past the budget: refund, void, and
      // the release waits for inventory.
      await mesh.procs.orders.waitForLog(
        (l) => l.saga_id === id && l.msg === "saga step unavailable beyond its budget: compensating",
        BUDGET_MS + 30_000,
      );
      await mesh.start("inventory");
      const done = await settled(id);
      expect(done.status).toBe(OrderStatus.CANCELLED);
      expect(done.cancelReason).toMatch(/^inventory unavailable: /);
    } finally {
      await mesh.clients.payments.setFaults({ faults: healthy }, admin.auth);
    }
    const { payment } = await mesh.clients.payments.getPayment({ paymentId: id }, admin.auth);
    expect(payment?.state).toBe(PaymentState.REFUNDED);
    const notice = await cancellation(id);
    expect(notice.body).toBe(
      `Your order ${id} was cancelled (${(await order(id))?.cancelReason}); your payment was refunded in full.`,
    );
    expect(notice.body).not.toContain("nothing was charged");
    await mesh.routable("inventory");
    expect((await mesh.clients.inventory.getProduct({ id: p })).product).toMatchObject({
      onHand: 5n,
      reserved: 0n,
    });
    await consistent();
  }, 120_000);
});
