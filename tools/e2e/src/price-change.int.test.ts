import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OrderService, OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { checkConsistency } from "@meshwork/orders";
import { createAssertionSigner, privateKeyFrom } from "@meshwork/runtime";
import { type ManagedProcess, waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Mesh, startMesh } from "./mesh.js";

/**
 * Issue 18's target: a price change reaches every orders instance within 200 ms of its commit. The
 * test measures and prints it but holds only a generous bound (a loaded 2-core CI box measured
 * 6 s with six processes starting and running sagas); speed goals belong to the benchmarks.
 */
const PROPAGATION_BOUND_MS = Number(process.env.MESHWORK_CACHE_PROPAGATION_BOUND_MS ?? 30_000);

describe("a price change reaches every orders instance's cache (every service a real process)", () => {
  let mesh: Mesh;
  let first: ManagedProcess;
  let second: ManagedProcess | undefined;
  let admin: Awaited<ReturnType<Mesh["login"]>>;
  let alice: Awaited<ReturnType<Mesh["login"]>>;
  const orderClients: Array<ReturnType<typeof createClient<typeof OrderService>>> = [];

  beforeAll(async () => {
    mesh = await startMesh({ orders: { SAGA_POLL_MS: "100" } });
    admin = await mesh.admin();
    alice = await mesh.login("alice@example.com");
    first = mesh.procs.orders;
    const firstUrl = mesh.urls.orders;
    second = await mesh.start("orders"); // a second instance on the same database
    for (const url of [firstUrl, mesh.urls.orders])
      orderClients.push(createClient(OrderService, createGrpcTransport({ baseUrl: url })));
    await mesh.routable("orders");
  }, 300_000); // six processes to start on a loaded two-core machine
  afterAll(async () => {
    await second?.stop();
    if (mesh) mesh.procs.orders = first;
    await mesh?.stop();
  });

  // Straight to one instance, as alice, with the gateway's signed assertion.
  const asAlice = () => ({
    headers: {
      "x-meshwork-identity": createAssertionSigner({
        issuer: "gateway",
        privateKey: privateKeyFrom(mesh.keys.gateway.privateKey),
      }).sign({ subject: alice.id, roles: ["customer"] }, "orders"),
    },
  });
  const placeOn = async (i: number, productId: string) => {
    const client = orderClients[i];
    if (!client) throw new Error(`no orders instance ${i}`);
    const { order } = await client.placeOrder(
      { idempotencyKey: randomUUID(), items: [{ productId, quantity: 1n }] },
      asAlice(),
    );
    return order;
  };
  const confirmed = (id: string) =>
    waitFor(
      async () => {
        const { order } = await mesh.clients.orders.getOrder({ id }, alice.auth);
        return order?.status === OrderStatus.CONFIRMED ? order : undefined;
      },
      { what: `order ${id} confirmed`, timeoutMs: 30_000 },
    );

  it("both see it within the bound (measured from before the update), and orders placed after it charge the new price", async () => {
    const { product } = await mesh.clients.inventory.createProduct(
      {
        sku: `P-${randomUUID().slice(0, 8)}`,
        name: "Kettle",
        price: { amountMinor: 1_000n, currency: "EUR" },
        initialStock: 100n,
      },
      admin.auth,
    );
    const id = product?.id ?? "";
    // Both instances have the old price in their L1.
    // (The second instance may still be finding inventory's endpoints in the registry.)
    for (const i of [0, 1]) {
      const order = await waitFor(() => placeOn(i, id), { what: `orders instance ${i} to place an order` });
      expect(order?.total?.amountMinor).toBe(1_000n);
    }

    const before = Date.now(); // no later than the commit: the measure errs on the slow side
    await mesh.clients.inventory.updateProduct(
      { id, price: { amountMinor: 1_500n, currency: "EUR" } },
      admin.auth,
    );
    // The call's own time (through the gateway, the transaction, its commit) is part of the figure:
    // printed beside it, the rest is the relay, JetStream and each instance's feed.
    const answered = Date.now() - before;
    const applied = await Promise.all(
      [first, second].map((p) =>
        p?.waitForLog(
          (l) => l.msg === "product change applied to the price cache" && l.product_id === id,
          30_000,
        ),
      ),
    );
    const latencies = applied.map((l) => Date.parse(String(l?.time)) - before); // pino writes ISO times
    console.log(
      `price change applied by the two orders instances after ${latencies.join(" and ")} ms ` +
        `(the UpdateProduct call answered after ${answered} ms)`,
    );
    for (const ms of latencies) expect(ms).toBeLessThan(PROPAGATION_BOUND_MS);

    const after = await Promise.all([placeOn(0, id), placeOn(1, id)]);
    for (const order of after) expect(order?.total?.amountMinor).toBe(1_500n);
    // The saga charged what the order says, and the checker finds nothing amiss.
    for (const order of after) {
      const done = await confirmed(order?.id ?? "");
      expect(done.total?.amountMinor).toBe(1_500n);
    }
    expect(await checkConsistency({ ...mesh.clients, admin: admin.auth })).toEqual([]);
  });
});
