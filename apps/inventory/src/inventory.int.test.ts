import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService, ReservationState } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestInventory, type TestInventory } from "./test-mesh.js";

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );

describe("inventory service on the real Postgres", () => {
  let t: TestInventory;
  let client: ReturnType<typeof createClient<typeof InventoryService>>;
  let grpcClient: ReturnType<typeof createClient<typeof InventoryService>>;
  const eur = (amountMinor: bigint) => ({ amountMinor, currency: "EUR" });

  beforeAll(async () => {
    t = await openTestInventory("mw_inv");
    const { url } = await t.start({ DB_POOL_MAX: "20" });
    client = createClient(InventoryService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    grpcClient = createClient(InventoryService, createGrpcTransport({ baseUrl: url }));
  });
  afterAll(() => t?.close());

  let skuSeq = 0;
  const product = async (stock: number, price = 1_000n) => {
    const { product } = await client.createProduct({
      sku: `SKU-${++skuSeq}-${randomUUID().slice(0, 8)}`,
      name: `Product ${skuSeq}`,
      price: eur(price),
      initialStock: BigInt(stock),
    });
    if (!product) throw new Error("no product");
    return product;
  };

  it("creates, gets and pages through products; a second SKU is ALREADY_EXISTS; bad input names the field", async () => {
    const a = await product(5, 1_999n);
    expect(a).toMatchObject({
      onHand: 5n,
      reserved: 0n,
      available: 5n,
      price: { amountMinor: 1_999n, currency: "EUR" },
    });
    expect((await grpcClient.getProduct({ id: a.id })).product).toEqual(a);
    const dup = await failure(
      client.createProduct({ sku: a.sku, name: "again", price: eur(1n), initialStock: 0n }),
    );
    expect(dup.code).toBe(Code.AlreadyExists);
    expect(dup.rawMessage).toContain(a.sku);

    const bad = await failure(client.createProduct({ sku: "no spaces", name: "x", price: eur(1n) }));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toContain("sku");
    const badCurrency = await failure(
      client.createProduct({ sku: "OK-1", name: "x", price: { amountMinor: 1n, currency: "euro" } }),
    );
    expect(badCurrency.code).toBe(Code.InvalidArgument);
    expect(badCurrency.rawMessage).toContain("price.currency");
    expect((await failure(client.getProduct({ id: randomUUID() }))).code).toBe(Code.NotFound);

    for (let i = 0; i < 4; i++) await product(1);
    const seen: string[] = [];
    let token = "";
    do {
      const page = await client.listProducts({ pageSize: 2, pageToken: token });
      expect(page.products.length).toBeLessThanOrEqual(2);
      seen.push(...page.products.map((p) => p.id));
      token = page.nextPageToken;
    } while (token);
    expect(seen.length).toBeGreaterThanOrEqual(5);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual(seen); // creation order
    expect((await failure(client.listProducts({ pageToken: "not-a-token" }))).code).toBe(
      Code.InvalidArgument,
    );
  });

  it("reserves all items or none, naming the product that lacks stock", async () => {
    const plenty = await product(10);
    const scarce = await product(1);
    const id = randomUUID();
    const err = await failure(
      client.reserveStock({
        reservationId: id,
        items: [
          { productId: plenty.id, quantity: 3n },
          { productId: scarce.id, quantity: 2n },
        ],
      }),
    );
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toBe(`insufficient stock for product ${scarce.id}: requested 2, available 1`);
    // Nothing held: the first item's reservation rolled back with the second's failure.
    expect((await client.getProduct({ id: plenty.id })).product?.reserved).toBe(0n);
    const unknown = await failure(
      client.reserveStock({
        reservationId: randomUUID(),
        items: [{ productId: randomUUID(), quantity: 1n }],
      }),
    );
    expect(unknown.code).toBe(Code.NotFound);
    const twice = await failure(
      client.reserveStock({
        reservationId: randomUUID(),
        items: [
          { productId: plenty.id, quantity: 1n },
          { productId: plenty.id, quantity: 1n },
        ],
      }),
    );
    expect(twice.code).toBe(Code.InvalidArgument);
    const zero = await failure(
      client.reserveStock({ reservationId: randomUUID(), items: [{ productId: plenty.id, quantity: 0n }] }),
    );
    expect(zero.code).toBe(Code.InvalidArgument);
    expect(zero.rawMessage).toContain("items[0].quantity");
  });

  it("is idempotent by reservation id through reserve, commit and release", async () => {
    const p = await product(10);
    const id = randomUUID();
    const items = [{ productId: p.id, quantity: 4n }];
    const first = await client.reserveStock({ reservationId: id, items });
    expect(first.reservation?.state).toBe(ReservationState.HELD);
    const again = await client.reserveStock({ reservationId: id, items });
    expect(again.reservation).toEqual(first.reservation);
    expect((await client.getProduct({ id: p.id })).product).toMatchObject({
      onHand: 10n,
      reserved: 4n,
      available: 6n,
    });
    const other = await failure(
      client.reserveStock({ reservationId: id, items: [{ productId: p.id, quantity: 5n }] }),
    );
    expect(other.code).toBe(Code.AlreadyExists);

    const committed = await client.commitReservation({ reservationId: id });
    expect(committed.reservation?.state).toBe(ReservationState.COMMITTED);
    expect((await client.getReservation({ reservationId: id })).reservation).toEqual(committed.reservation);
    expect((await failure(client.getReservation({ reservationId: randomUUID() }))).code).toBe(Code.NotFound);
    expect((await client.auditStock({})).products.find((a) => a.productId === p.id)).toMatchObject({
      onHand: 6n,
      received: 10n,
      committed: 4n,
    });
    await client.commitReservation({ reservationId: id }); // a no-op
    expect((await client.getProduct({ id: p.id })).product).toMatchObject({
      onHand: 6n,
      reserved: 0n,
      available: 6n,
    });

    // Released after its commit (an order compensated late): the units come back to stock.
    const returned = randomUUID();
    await client.reserveStock({ reservationId: returned, items: [{ productId: p.id, quantity: 1n }] });
    await client.commitReservation({ reservationId: returned });
    expect((await client.getProduct({ id: p.id })).product).toMatchObject({ onHand: 5n, reserved: 0n });
    expect((await client.releaseReservation({ reservationId: returned })).reservation?.state).toBe(
      ReservationState.RELEASED,
    );
    expect((await client.getProduct({ id: p.id })).product).toMatchObject({ onHand: 6n, reserved: 0n });
    expect((await client.auditStock({})).products.find((a) => a.productId === p.id)).toMatchObject({
      onHand: 6n,
      received: 10n,
      committed: 4n,
    });

    const held = randomUUID();
    await client.reserveStock({ reservationId: held, items });
    await client.releaseReservation({ reservationId: held });
    expect((await client.releaseReservation({ reservationId: held })).reservation?.state).toBe(
      ReservationState.RELEASED,
    );
    expect((await client.getProduct({ id: p.id })).product).toMatchObject({ onHand: 6n, reserved: 0n });
    expect((await failure(client.commitReservation({ reservationId: held }))).code).toBe(
      Code.FailedPrecondition,
    );
    expect((await failure(client.commitReservation({ reservationId: randomUUID() }))).code).toBe(
      Code.NotFound,
    );

    // Released before it was ever reserved (a compensation that overtook its action): a late
    // reservation with that id is refused and holds nothing.
    const late = randomUUID();
    expect((await client.releaseReservation({ reservationId: late })).reservation?.state).toBe(
      ReservationState.RELEASED,
    );
    const refused = await failure(client.reserveStock({ reservationId: late, items }));
    expect(refused.code).toBe(Code.FailedPrecondition);
    expect((await client.getProduct({ id: p.id })).product?.reserved).toBe(0n);
  });

  it("adjusts stock, never below what reservations hold", async () => {
    const p = await product(5);
    await client.reserveStock({ reservationId: randomUUID(), items: [{ productId: p.id, quantity: 3n }] });
    expect(
      (await client.adjustStock({ productId: p.id, delta: 10n, reason: "delivery" })).product?.onHand,
    ).toBe(15n);
    const under = await failure(client.adjustStock({ productId: p.id, delta: -13n, reason: "recount" }));
    expect(under.code).toBe(Code.FailedPrecondition);
    expect(under.rawMessage).toContain(p.id);
    expect(
      (await client.adjustStock({ productId: p.id, delta: -12n, reason: "recount" })).product,
    ).toMatchObject({
      onHand: 3n,
      reserved: 3n,
      available: 0n,
    });
    expect((await failure(client.adjustStock({ productId: p.id, delta: 0n }))).code).toBe(
      Code.InvalidArgument,
    );
  });

  // Issue 25.8: counts stay exact numbers, or the change is refused naming the field.
  it("keeps 2^53 - 1 units exact, and refuses an adjustment beyond it naming delta", async () => {
    const max = 9_007_199_254_740_991n;
    const p = await product(Number(max - 5n));
    expect(p.onHand).toBe(max - 5n);
    expect(
      (await client.adjustStock({ productId: p.id, delta: 5n, reason: "delivery" })).product?.onHand,
    ).toBe(max);
    const over = await failure(client.adjustStock({ productId: p.id, delta: 1n, reason: "delivery" }));
    expect(over.code).toBe(Code.InvalidArgument);
    expect(over.rawMessage).toMatch(/^delta: 1 would take the units of product .* beyond the most counted/);
    expect((await client.getProduct({ id: p.id })).product).toMatchObject({ onHand: max, available: max });
    // A removal still works at the top.
    expect(
      (await client.adjustStock({ productId: p.id, delta: -1n, reason: "damage" })).product?.onHand,
    ).toBe(max - 1n);
    // A product that is not there is still NOT_FOUND.
    expect((await failure(client.adjustStock({ productId: randomUUID(), delta: 1n }))).code).toBe(
      Code.NotFound,
    );
  });

  it("refuses a NUL character in a string, naming the field, and stores nothing", async () => {
    const err = await failure(
      client.createProduct({
        sku: `SKU-${randomUUID().slice(0, 8)}`,
        name: "Mug\0",
        price: eur(1n),
        initialStock: 1n,
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("name: must not contain a NUL character (\\0)");
  });

  it("never oversells the last units under parallel reservations", async () => {
    const p = await product(7);
    const other = await product(100);
    const attempts = 40;
    const results = await Promise.allSettled(
      Array.from({ length: attempts }, (_, i) =>
        (i % 2 ? grpcClient : client).reserveStock({
          reservationId: randomUUID(),
          // Half also take another product, in the other order, to exercise lock ordering.
          items:
            i % 3
              ? [{ productId: p.id, quantity: 1n }]
              : [
                  { productId: other.id, quantity: 1n },
                  { productId: p.id, quantity: 1n },
                ],
        }),
      ),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r) => r.status === "rejected").map((r) => ConnectError.from(r.reason));
    expect(ok).toHaveLength(7);
    expect(refused.every((e) => e.code === Code.FailedPrecondition)).toBe(true);
    expect((await client.getProduct({ id: p.id })).product).toMatchObject({
      onHand: 7n,
      reserved: 7n,
      available: 0n,
    });

    // The same reservation sent many times at once: one reservation, held once.
    const q = await product(10);
    const id = randomUUID();
    const same = await Promise.all(
      Array.from({ length: 10 }, () =>
        client.reserveStock({ reservationId: id, items: [{ productId: q.id, quantity: 2n }] }),
      ),
    );
    expect(new Set(same.map((r) => r.reservation?.id))).toEqual(new Set([id]));
    expect((await client.getProduct({ id: q.id })).product?.reserved).toBe(2n);

    // The audit agrees: every product's counters match what its reservations say.
    const { products: audit } = await client.auditStock({});
    for (const a of audit) {
      expect(a.onHand).toBe(a.received - a.committed);
      expect(a.reserved).toBe(a.held);
    }
    expect(audit.find((a) => a.productId === p.id)).toMatchObject({
      onHand: 7n,
      reserved: 7n,
      held: 7n,
      committed: 0n,
    });
    // And the database agrees: no row anywhere has more reserved than on hand.
    const sql = postgres(t.db.url, { max: 1 });
    try {
      const bad = await sql`select id from products where reserved > on_hand or reserved < 0`;
      expect(bad).toHaveLength(0);
    } finally {
      await sql.end();
    }
  });
});
