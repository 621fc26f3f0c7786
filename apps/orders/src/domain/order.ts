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

/** The caller lacks a role the request needs. */
export class PermissionDeniedError extends Error {
  override readonly name = "PermissionDeniedError";
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
