import type { StoredItem } from "../adapters/db/schema.js";

export type OrderStatus = "pending" | "stock_reserved" | "payment_authorized" | "confirmed" | "cancelled";

export interface Order {
  id: string;
  userId: string;
  items: StoredItem[];
  totalMinor: number;
  currency: string;
  status: OrderStatus;
  cancelReason: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** The saga's data: what every step needs, fixed when the order is placed. */
export interface PlacementData {
  userId: string;
  items: Array<{ productId: string; quantity: number }>;
  totalMinor: number;
  currency: string;
}

export const TERMINAL: ReadonlySet<OrderStatus> = new Set(["confirmed", "cancelled"]);

export class OrderNotFoundError extends Error {
  override readonly name = "OrderNotFoundError";
  constructor(readonly orderId: string) {
    super(`order ${orderId} not found`);
  }
}

/** The same idempotency key with another request. */
export class IdempotencyKeyReusedError extends Error {
  override readonly name = "IdempotencyKeyReusedError";
  constructor(key: string) {
    super(`idempotency key ${key} was already used for a different order request`);
  }
}

export class OrderStateError extends Error {
  override readonly name = "OrderStateError";
  constructor(orderId: string, why: string) {
    super(`order ${orderId} ${why}: cannot cancel it`);
  }
}

export class InvalidOrderError extends Error {
  override readonly name = "InvalidOrderError";
}

/** A stable hash of what was asked (items in product order), to compare repeats of a key. */
export function requestHash(items: ReadonlyArray<{ productId: string; quantity: number }>): string {
  return [...items]
    .sort((a, b) => (a.productId < b.productId ? -1 : 1))
    .map((i) => `${i.productId}x${i.quantity}`)
    .join(",");
}
