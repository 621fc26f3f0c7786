export type OrderStatus = "pending" | "stock_reserved" | "payment_authorized" | "confirmed" | "cancelled";

/** One line of an order, with the unit price the catalogue gave when it was placed. */
export interface OrderItem {
  productId: string;
  quantity: number;
  unitPriceMinor: number;
}

export interface Order {
  id: string;
  userId: string;
  items: OrderItem[];
  totalMinor: number;
  currency: string;
  status: OrderStatus;
  cancelReason: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** An order about to be stored, with what identifies a repeat of its request. */
export interface NewOrder {
  id: string;
  userId: string;
  idempotencyKey: string;
  requestHash: string;
  items: OrderItem[];
  totalMinor: number;
  currency: string;
}

/** The saga's data: what every step needs, fixed when the order is placed. */
export interface PlacementData {
  userId: string;
  items: Array<{ productId: string; quantity: number }>;
  totalMinor: number;
  currency: string;
}

export const TERMINAL: ReadonlySet<OrderStatus> = new Set(["confirmed", "cancelled"]);

/** How far along a status is; a watch only moves forward. */
export const RANK: Readonly<Record<OrderStatus, number>> = {
  pending: 0,
  stock_reserved: 1,
  payment_authorized: 2,
  confirmed: 3,
  cancelled: 3,
};

export class OrderNotFoundError extends Error {
  override readonly name = "OrderNotFoundError";
  constructor(readonly orderId: string) {
    super(`order ${orderId} not found`);
  }
}

/** A product the catalogue does not know. */
export class ProductNotFoundError extends Error {
  override readonly name = "ProductNotFoundError";
  constructor(
    readonly productId: string,
    options?: ErrorOptions,
  ) {
    super(`product ${productId} not found`, options);
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

/** No saga with this id (the order's id). */
export class SagaNotFoundError extends Error {
  override readonly name = "SagaNotFoundError";
  constructor(readonly sagaId: string) {
    super(`saga ${sagaId} not found`);
  }
}

/** The caller lacks a role the request needs. */
export class PermissionDeniedError extends Error {
  override readonly name = "PermissionDeniedError";
}

/**
 * The largest amount of minor units an order holds: 2^53 - 1, the largest every service and every
 * JavaScript client holds exactly (the contracts refuse larger prices the same way).
 */
export const MAX_AMOUNT_MINOR = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The exact total of an order's lines, computed in integers of any size, so a large quantity
 * times a large price never rounds or wraps. A total (or a unit price) beyond MAX_AMOUNT_MINOR is
 * InvalidOrderError naming the field: the order is refused, never stored wrong.
 */
export function orderTotal(items: ReadonlyArray<{ quantity: number; unitPriceMinor: bigint }>): number {
  let total = 0n;
  for (const [n, item] of items.entries()) {
    if (item.unitPriceMinor < 0n || item.unitPriceMinor > MAX_AMOUNT_MINOR) {
      throw new InvalidOrderError(
        `items[${n}].unit_price: ${item.unitPriceMinor} minor units is beyond the largest amount accepted (${MAX_AMOUNT_MINOR})`,
      );
    }
    total += item.unitPriceMinor * BigInt(item.quantity);
  }
  if (total > MAX_AMOUNT_MINOR) {
    throw new InvalidOrderError(
      `total: the order comes to ${total} minor units, beyond the largest amount accepted (${MAX_AMOUNT_MINOR})`,
    );
  }
  return Number(total);
}

/** A user already holds as many WatchOrder streams as one user may. */
export class TooManyWatchesError extends Error {
  override readonly name = "TooManyWatchesError";

  constructor(readonly limit: number) {
    super(`too many WatchOrder streams open for this user (limit ${limit}): close one first`);
  }
}

/** A stable hash of what was asked (items in product order), to compare repeats of a key. */
export function requestHash(items: ReadonlyArray<{ productId: string; quantity: number }>): string {
  return [...items]
    .sort((a, b) => (a.productId < b.productId ? -1 : 1))
    .map((i) => `${i.productId}x${i.quantity}`)
    .join(",");
}
