import { describe, expect, it } from "vitest";
import {
  IdempotencyKeyReusedError,
  type NewOrder,
  type Order,
  ProductNotFoundError,
} from "../../domain/order.js";
import type { OrderRepository, Price } from "../../domain/ports.js";
import { placeOrder } from "./place-order.js";

/** A repository keeping orders in memory by (user, key), as the database's unique key does. */
function memoryOrders() {
  const byKey = new Map<string, Order & { requestHash: string }>();
  const calls = { findByKey: 0, place: 0 };
  const repo = {
    async findByKey(userId: string, key: string) {
      calls.findByKey++;
      return byKey.get(`${userId}/${key}`);
    },
    async place(o: NewOrder) {
      calls.place++;
      const existing = byKey.get(`${o.userId}/${o.idempotencyKey}`);
      if (existing) {
        if (existing.requestHash !== o.requestHash) throw new IdempotencyKeyReusedError(o.idempotencyKey);
        const { requestHash: _h, ...order } = existing;
        return { order, created: false };
      }
      const now = new Date();
      const order: Order = {
        id: o.id,
        userId: o.userId,
        items: o.items,
        totalMinor: o.totalMinor,
        currency: o.currency,
        status: "pending",
        cancelReason: null,
        createdAt: now,
        updatedAt: now,
      };
      byKey.set(`${o.userId}/${o.idempotencyKey}`, { ...order, requestHash: o.requestHash });
      return { order, created: true };
    },
  } as unknown as OrderRepository;
  return { repo, calls };
}

/** A catalogue whose products can be removed. */
function catalogue(prices: Record<string, Price>) {
  return {
    prices,
    async price(productId: string): Promise<Price> {
      const p = prices[productId];
      if (!p) throw new ProductNotFoundError(productId);
      return p;
    },
  };
}

describe("placeOrder: a repeated idempotency key", () => {
  const alice = "alice";
  const items = [{ productId: "p1", quantity: 1 }];

  it("returns the order placed with the key even when its products can no longer be priced", async () => {
    const { repo } = memoryOrders();
    const cat = catalogue({ p1: { amountMinor: 500n, currency: "EUR" } });
    const first = await placeOrder(
      { orders: repo, catalogue: cat },
      { userId: alice, idempotencyKey: "k", items },
    );
    delete cat.prices.p1; // the product is gone since
    const again = await placeOrder(
      { orders: repo, catalogue: cat },
      { userId: alice, idempotencyKey: "k", items },
    );
    expect(again.id).toBe(first.id);
    expect(again.totalMinor).toBe(500);
  });

  it("refuses the key for other contents, whether or not they can be priced; a new key gets the pricing error", async () => {
    const { repo } = memoryOrders();
    const cat = catalogue({
      p1: { amountMinor: 500n, currency: "EUR" },
      p2: { amountMinor: 7n, currency: "EUR" },
    });
    const deps = { orders: repo, catalogue: cat };
    await placeOrder(deps, { userId: alice, idempotencyKey: "k", items });
    const other = [{ productId: "p2", quantity: 1 }];
    await expect(
      placeOrder(deps, { userId: alice, idempotencyKey: "k", items: other }),
    ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    const unknown = [{ productId: "gone", quantity: 1 }];
    await expect(
      placeOrder(deps, { userId: alice, idempotencyKey: "k", items: unknown }),
    ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(
      placeOrder(deps, { userId: alice, idempotencyKey: "new", items: unknown }),
    ).rejects.toBeInstanceOf(ProductNotFoundError);
    // Another user's key is not this one's.
    await expect(
      placeOrder(deps, { userId: "bob", idempotencyKey: "k", items: unknown }),
    ).rejects.toBeInstanceOf(ProductNotFoundError);
  });

  it("returns the stored order (its hash checked) for a repeat that can be priced, without a lookup first", async () => {
    const { repo, calls } = memoryOrders();
    const cat = catalogue({ p1: { amountMinor: 500n, currency: "EUR" } });
    const deps = { orders: repo, catalogue: cat };
    const first = await placeOrder(deps, { userId: alice, idempotencyKey: "k", items });
    cat.prices.p1 = { amountMinor: 900n, currency: "EUR" }; // the price changed since
    const again = await placeOrder(deps, { userId: alice, idempotencyKey: "k", items });
    expect(again).toMatchObject({ id: first.id, totalMinor: 500 });
    expect(calls).toEqual({ findByKey: 0, place: 2 });
  });
});
