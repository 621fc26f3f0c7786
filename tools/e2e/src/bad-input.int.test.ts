import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { createAssertionSigner, privateKeyFrom } from "@meshwork/runtime";
import { waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Mesh, startMesh } from "./mesh.js";

// Issue 25.8: bad input is INVALID_ARGUMENT naming the field, never INTERNAL, at every service
// and through the gateway; money stays exact end to end or is refused.

const MAX_EXACT = 9_007_199_254_740_991n; // 2^53 - 1, the largest amount accepted
const INT64_MAX = 9_223_372_036_854_775_807n;

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );

/** A gRPC call with a raw request message (through the gateway); its status and message. */
async function rawGrpc(url: string, path: string, token: string, message: Uint8Array) {
  const session = http2.connect(url);
  try {
    return await new Promise<{ status: number; message: string }>((resolve, reject) => {
      const body = Buffer.alloc(5 + message.length);
      body.writeUInt32BE(message.length, 1);
      body.set(message, 5);
      const stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        authorization: `Bearer ${token}`,
      });
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => {
        head = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("data", () => {});
      stream.on("end", () => {
        const t = trailers["grpc-status"] !== undefined ? trailers : head;
        resolve({
          status: Number(t["grpc-status"]),
          message: decodeURIComponent(String(t["grpc-message"] ?? "")),
        });
      });
      stream.on("error", reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

describe("bad input through the gateway and at each service (every service a real process)", () => {
  let mesh: Mesh;
  let admin: Awaited<ReturnType<Mesh["login"]>>;
  let alice: Awaited<ReturnType<Mesh["login"]>>;
  let token: string;

  beforeAll(async () => {
    // No decline threshold: the largest amount must be authorized and captured.
    mesh = await startMesh({ payments: { PAYMENTS_DECLINE_ABOVE_MINOR: "0" } });
    admin = await mesh.admin();
    alice = await mesh.login("alice@example.com");
    token = admin.auth.headers.authorization.replace(/^Bearer /, "");
    await mesh.routable("orders");
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  const product = (price: bigint, stock = 10n, name = "Thing") =>
    mesh.clients.inventory.createProduct(
      {
        sku: `SKU-${randomUUID().slice(0, 8)}`,
        name,
        price: { amountMinor: price, currency: "EUR" },
        initialStock: stock,
      },
      admin.auth,
    );

  it.each([
    [
      "users",
      "email",
      () =>
        mesh.clients.users.registerUser({
          email: "x\0@example.com",
          password: "a long password",
          displayName: "X",
        }),
    ],
    ["inventory", "name", () => product(100n, 1n, "Mug\0")],
    [
      "orders",
      "idempotency_key",
      () =>
        mesh.clients.orders.placeOrder(
          { idempotencyKey: `key-\0-${randomUUID()}`, items: [{ productId: randomUUID(), quantity: 1n }] },
          alice.auth,
        ),
    ],
    [
      "payments",
      "payment_id",
      () => mesh.clients.payments.getPayment({ paymentId: `${randomUUID()}\0` }, admin.auth),
    ],
    [
      "notifications",
      "user_id",
      () => mesh.clients.notifications.listNotifications({ userId: `${alice.id}\0` }, alice.auth),
    ],
  ] as const)("%s: INVALID_ARGUMENT naming %s", async (_service, field, call) => {
    const err = await failure(call());
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toContain(field);
  });

  it.each([
    ["9007199254740993 as a price", "price.amount_minor", () => product(9_007_199_254_740_993n)],
    ["int64 max as a price", "price.amount_minor", () => product(INT64_MAX)],
    ["9007199254740993 as initial stock", "initial_stock", () => product(100n, 9_007_199_254_740_993n)],
    ["int64 max as initial stock", "initial_stock", () => product(100n, INT64_MAX)],
    [
      "int64 max as a payments decline threshold",
      "faults.decline_above_minor",
      () => mesh.clients.payments.setFaults({ faults: { declineAboveMinor: INT64_MAX } }, admin.auth),
    ],
  ] as const)("refuses %s, naming %s (never rounded, never INTERNAL)", async (_what, field, call) => {
    const err = await failure(call());
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toContain(field);
  });

  it("payments refuses an amount beyond 2^53 - 1 at its own port, naming amount.amount_minor", async () => {
    const payments = createClient(
      PaymentService,
      createConnectTransport({ baseUrl: mesh.urls.payments, httpVersion: "2" }),
    );
    // As orders calls it east-west: an assertion signed with orders' key (role service).
    const asOrders = createAssertionSigner({
      issuer: "orders",
      privateKey: privateKeyFrom(mesh.keys.orders.privateKey),
    }).sign({ subject: "orders", roles: ["service"] }, "payments");
    for (const amountMinor of [MAX_EXACT + 2n, INT64_MAX]) {
      const err = await failure(
        payments.authorizePayment(
          { paymentId: randomUUID(), userId: alice.id, amount: { amountMinor, currency: "EUR" } },
          { headers: { "x-meshwork-identity": asOrders } },
        ),
      );
      expect(err?.code).toBe(Code.InvalidArgument);
      expect(err?.rawMessage).toContain("amount.amount_minor");
    }
  });

  it.each([
    ["users", "/meshwork.users.v1.UserService/GetUser"],
    ["inventory", "/meshwork.inventory.v1.InventoryService/GetProduct"],
    ["orders", "/meshwork.orders.v1.OrderService/GetOrder"],
    ["payments", "/meshwork.payments.v1.PaymentService/GetPayment"],
    ["notifications", "/meshwork.notifications.v1.NotificationService/ListNotifications"],
  ])("%s answers an undecodable message through the gateway with INVALID_ARGUMENT", async (_s, path) => {
    for (const [bytes, words] of [
      [Uint8Array.of(0x08, 0xff), /truncated/],
      [Uint8Array.of(0x0f, 0x00), /wire type 7/],
      [Uint8Array.of(0x0a, 0x02, 0xc3, 0x28), /UTF-8/],
      [new Uint8Array(20_000).fill(0x7b), /nested too deeply/],
    ] as const) {
      const answer = await rawGrpc(mesh.gatewayUrl, path, token, bytes);
      expect(answer.status).toBe(Code.InvalidArgument);
      expect(answer.message).toMatch(words);
    }
  });

  it("keeps the largest accepted amount exact end to end: stored, read back, ordered, paid", async () => {
    const { product: p } = await product(MAX_EXACT, 5n);
    expect(p?.price?.amountMinor).toBe(MAX_EXACT);
    const { product: read } = await mesh.clients.inventory.getProduct({ id: p?.id ?? "" });
    expect(read?.price?.amountMinor).toBe(MAX_EXACT);
    // As JSON through the gateway too: int64 travels as a string, digit for digit.
    const res = await fetch(`${mesh.gatewayUrl}/meshwork.inventory.v1.InventoryService/GetProduct`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: p?.id }),
    });
    expect(await res.text()).toContain('"amountMinor":"9007199254740991"');

    const { order } = await mesh.clients.orders.placeOrder(
      { idempotencyKey: randomUUID(), items: [{ productId: p?.id ?? "", quantity: 1n }] },
      alice.auth,
    );
    expect(order?.total?.amountMinor).toBe(MAX_EXACT);
    const done = await waitFor(
      async () => {
        const { order: o } = await mesh.clients.orders.getOrder({ id: order?.id ?? "" }, alice.auth);
        return o?.status === OrderStatus.CONFIRMED || o?.status === OrderStatus.CANCELLED ? o : undefined;
      },
      { what: "the order to finish", timeoutMs: 30_000 },
    );
    expect(done.status).toBe(OrderStatus.CONFIRMED);
    expect(done.total?.amountMinor).toBe(MAX_EXACT);
    expect(done.items[0]?.unitPrice?.amountMinor).toBe(MAX_EXACT);
    const { payment } = await mesh.clients.payments.getPayment({ paymentId: order?.id ?? "" }, admin.auth);
    expect(payment?.amount?.amountMinor).toBe(MAX_EXACT);
  });

  it("refuses an order whose total overflows, naming the total, and stores nothing", async () => {
    const { product: p } = await product(MAX_EXACT / 2n + 1n, 5n);
    const key = randomUUID();
    const err = await failure(
      mesh.clients.orders.placeOrder(
        { idempotencyKey: key, items: [{ productId: p?.id ?? "", quantity: 2n }] },
        alice.auth,
      ),
    );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toMatch(/^total: the order comes to 9007199254740992 minor units/);
    // 1000 units at the largest price: a product that would wrap int64 is refused the same way.
    const { product: dear } = await product(MAX_EXACT, 1000n);
    const big = await failure(
      mesh.clients.orders.placeOrder(
        { idempotencyKey: randomUUID(), items: [{ productId: dear?.id ?? "", quantity: 1000n }] },
        alice.auth,
      ),
    );
    expect(big?.code).toBe(Code.InvalidArgument);
    expect(big?.rawMessage).toContain("total: the order comes to 9007199254740991000 minor units");
    const { orders } = await mesh.clients.orders.listOrders({}, alice.auth);
    expect(
      orders.filter((o) => o.items.some((i) => i.productId === p?.id || i.productId === dear?.id)),
    ).toEqual([]);
  });

  it("logs no bad input as an unhandled error in any service", () => {
    for (const [name, proc] of Object.entries(mesh.procs)) {
      expect(
        proc.logs().filter((l) => l.msg === "unhandled error"),
        name,
      ).toEqual([]);
    }
  });
});
