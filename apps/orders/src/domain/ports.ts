import type { NewOrder, Order, OrderStatus } from "./order.js";

/** Orders as the use cases see them; every status change also records its event. */
export interface OrderRepository {
  /** The user's order placed with this idempotency key, with the hash of its request. */
  findByKey(userId: string, key: string): Promise<(Order & { requestHash: string }) | undefined>;
  /**
   * Stores the order, starts its placement saga and records OrderPlaced, all or nothing. A
   * concurrent placement with the same key gets the winner's order (`created: false`), or
   * IdempotencyKeyReusedError when the requests differ. `run`, when set, starts the saga's first
   * step now that the order is committed.
   */
  place(order: NewOrder): Promise<{ order: Order; created: boolean; run?: () => void }>;
  /** One of the user's orders; another user's is OrderNotFoundError. */
  get(userId: string, id: string): Promise<Order>;
  /** Any order. */
  byId(id: string): Promise<Order | undefined>;
  /** The user's orders (every user's with `undefined`), newest first, ids below `beforeId`. */
  listBefore(userId: string | undefined, beforeId: string | undefined, limit: number): Promise<Order[]>;
  /** Asks the saga to stop; OrderStateError once the payment is being captured or the order is done. */
  requestCancel(userId: string, id: string): Promise<Order>;
}

/** A product's price as an order keeps it. */
export interface Price {
  amountMinor: bigint;
  currency: string;
}

/** Product prices at placement; an unknown product is ProductNotFoundError. */
export interface PriceList {
  price(productId: string): Promise<Price>;
}

/** The status changes of orders, as they commit (in this process and others). */
export interface StatusFeed extends AsyncIterable<OrderStatus | "resync"> {
  close(): void;
}

/** Subscribes to one order's status changes until the signal aborts or the feed is closed. */
export interface StatusWatch {
  subscribe(orderId: string, signal?: AbortSignal): StatusFeed;
}
