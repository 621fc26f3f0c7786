import { v7 as uuidv7 } from "uuid";
import {
  IdempotencyKeyReusedError,
  InvalidOrderError,
  type NewOrder,
  type Order,
  orderTotal,
  requestHash,
} from "../../domain/order.js";
import type { OrderRepository, PriceList } from "../../domain/ports.js";

export interface PlaceOrderInput {
  userId: string;
  idempotencyKey: string;
  items: Array<{ productId: string; quantity: number }>;
}

export interface PlaceOrderDeps {
  orders: OrderRepository;
  catalogue: PriceList;
}

/**
 * Places an order at today's catalogue prices and starts its placement saga. A repeat of the
 * same request with the same key returns the order it placed; another request with that key is
 * IdempotencyKeyReusedError.
 */
export async function placeOrder(deps: PlaceOrderDeps, input: PlaceOrderInput): Promise<Order> {
  const { userId, idempotencyKey, items } = input;
  if (new Set(items.map((i) => i.productId)).size !== items.length) {
    throw new InvalidOrderError("items: a product appears more than once");
  }
  const hash = requestHash(items);
  // No lookup by key first (one round trip per placement fewer): the insert finds a repeat by
  // its key. A repeat that can no longer be priced (a product gone since) still gets its order.
  let priced: Priced;
  try {
    priced = await priceItems(deps, items);
  } catch (err) {
    const existing = await deps.orders.findByKey(userId, idempotencyKey);
    if (!existing) throw err;
    if (existing.requestHash !== hash) throw new IdempotencyKeyReusedError(idempotencyKey);
    return existing;
  }
  const { order, run } = await deps.orders.place({
    id: uuidv7(),
    userId,
    idempotencyKey,
    requestHash: hash,
    ...priced,
  });
  run?.();
  return order;
}

type Priced = { items: NewOrder["items"]; totalMinor: number; currency: string };

/** The items at today's catalogue prices (the order keeps them), their total and currency. */
async function priceItems(deps: PlaceOrderDeps, items: PlaceOrderInput["items"]): Promise<Priced> {
  const prices = await Promise.all(items.map((i) => deps.catalogue.price(i.productId)));
  const currencies = new Set(prices.map((p) => p.currency));
  if (currencies.size !== 1) {
    throw new InvalidOrderError(
      `items: products are priced in different currencies (${[...currencies].join(", ")})`,
    );
  }
  const priced = items.map((i, n) => ({ ...i, unitPriceMinor: prices[n]?.amountMinor ?? 0n }));
  // Exact, or refused: checked before the unit prices become numbers.
  const totalMinor = orderTotal(priced);
  const stored = priced.map((i) => ({ ...i, unitPriceMinor: Number(i.unitPriceMinor) }));
  return { items: stored, totalMinor, currency: [...currencies][0] as string };
}
