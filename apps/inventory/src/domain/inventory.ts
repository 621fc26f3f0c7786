/** A product with its stock, as the service sees it. */
export interface Product {
  id: string;
  sku: string;
  name: string;
  priceMinor: number;
  currency: string;
  onHand: number;
  reserved: number;
  /** Initial stock plus every adjustment. */
  received: number;
  createdAt: Date;
  /** Grows by one with every change (name, price, stock). */
  version: number;
}

/** A product's id and current version: what a listing reads before the products themselves. */
export interface ProductRef {
  id: string;
  version: number;
}

/** What UpdateProduct changes; an absent field is kept. */
export interface ProductChanges {
  name?: string;
  priceMinor?: number;
  currency?: string;
}

/** A product's version after a change committed, for caches to drop older copies. */
export interface ProductChanged {
  productId: string;
  version: number;
}

/** A product about to be created, with its initial stock. */
export interface NewProduct {
  id: string;
  sku: string;
  name: string;
  priceMinor: number;
  currency: string;
  onHand: number;
}

/** One product's stock next to what its history says it should be. */
export interface StockAudit {
  productId: string;
  onHand: number;
  reserved: number;
  /** Initial stock plus every adjustment. */
  received: number;
  /** Units taken by committed reservations. */
  committed: number;
  /** Units held by held reservations. */
  held: number;
}

export type ReservationState = "held" | "committed" | "released";

export interface ReservationItem {
  productId: string;
  quantity: number;
}

export interface Reservation {
  id: string;
  state: ReservationState;
  /** Sorted by product id. */
  items: ReservationItem[];
  createdAt: Date;
}

export class ProductNotFoundError extends Error {
  override readonly name = "ProductNotFoundError";
  constructor(readonly productId: string) {
    super(`product ${productId} not found`);
  }
}

export class SkuTakenError extends Error {
  override readonly name = "SkuTakenError";
  constructor(
    readonly sku: string,
    options?: ErrorOptions,
  ) {
    super(`a product with sku ${sku} already exists`, options);
  }
}

/**
 * The most units a product counts (on hand, received): 2^53 - 1, the largest the service and every
 * JavaScript client hold exactly. The contract refuses a larger initial stock the same way.
 */
export const MAX_UNITS = Number.MAX_SAFE_INTEGER;

/** An adjustment that would take a product's count beyond MAX_UNITS: refused, never rounded. */
export class StockOutOfRangeError extends Error {
  override readonly name = "StockOutOfRangeError";
  constructor(
    readonly productId: string,
    readonly delta: number,
  ) {
    super(
      `delta: ${delta} would take the units of product ${productId} beyond the most counted (${MAX_UNITS})`,
    );
  }
}

/** Not enough available units: names the product, what was asked and what is left. */
export class InsufficientStockError extends Error {
  override readonly name = "InsufficientStockError";
  constructor(
    readonly productId: string,
    readonly requested: number,
    readonly available: number,
  ) {
    super(`insufficient stock for product ${productId}: requested ${requested}, available ${available}`);
  }
}

export class ReservationNotFoundError extends Error {
  override readonly name = "ReservationNotFoundError";
  constructor(readonly reservationId: string) {
    super(`reservation ${reservationId} not found`);
  }
}

/** The same reservation id used for a different set of items. */
export class ReservationConflictError extends Error {
  override readonly name = "ReservationConflictError";
  constructor(readonly reservationId: string) {
    super(`reservation ${reservationId} already exists with other items`);
  }
}

/** A transition the reservation's state does not allow (commit after release, and so on). */
export class ReservationStateError extends Error {
  override readonly name = "ReservationStateError";
  constructor(
    readonly reservationId: string,
    readonly state: ReservationState,
    action: string,
  ) {
    super(`reservation ${reservationId} is ${state}: cannot ${action} it`);
  }
}

/** An UpdateProduct that changes nothing. */
export class NothingToUpdateError extends Error {
  override readonly name = "NothingToUpdateError";
  constructor() {
    super("name or price: give at least one to change");
  }
}

/** The same product twice in one reservation. */
export class DuplicateItemError extends Error {
  override readonly name = "DuplicateItemError";
  constructor(readonly productId: string) {
    super(`items: product ${productId} appears more than once`);
  }
}

/** Items in a canonical order (by product id): locks are taken in this order, so never deadlock. */
export function canonicalItems(items: readonly ReservationItem[]): ReservationItem[] {
  // Lowercase, as Postgres returns uuids (the uuid rule accepts uppercase): the ids compare as
  // strings with stored ones, and mixed-case duplicates are caught.
  const sorted = items
    .map((i) => ({ ...i, productId: i.productId.toLowerCase() }))
    .sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]?.productId === sorted[i - 1]?.productId)
      throw new DuplicateItemError(sorted[i]?.productId ?? "");
  }
  return sorted;
}

export function sameItems(a: readonly ReservationItem[], b: readonly ReservationItem[]): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => x.productId === b[i]?.productId && x.quantity === b[i]?.quantity)
  );
}
