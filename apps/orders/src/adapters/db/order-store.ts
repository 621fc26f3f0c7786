import type { AnyTransaction, Database } from "@meshwork/db";
import { and, desc, eq, sql } from "drizzle-orm";
import {
  type NewOrder,
  type Order,
  OrderNotFoundError,
  OrderStateError,
  type PlacementData,
} from "../../domain/order.js";
import type { OrderRepository } from "../../domain/ports.js";
import { columns } from "./order-rows.js";
import { findByKey, placeOrder, type StartPlacement } from "./placement.js";
import { beforeStep, cancelOrder, confirmOrder } from "./saga-hooks.js";
import { type OrdersSchema, orders } from "./schema.js";

export { EVENT_SOURCE, STATUS_CHANNEL } from "./order-rows.js";
export type { StartPlacement } from "./placement.js";

/**
 * Orders in Postgres. Every status change happens in a transaction that also writes the event
 * for it (when there is one) and a `NOTIFY` for WatchOrder; placement also starts the saga.
 * Placement is in placement.ts, what the saga does to an order in saga-hooks.ts.
 */
export function createOrderStore(db: Database<OrdersSchema>, namespace: string) {
  return {
    findByKey: (userId: string, key: string) => findByKey(db, userId, key),
    /** See `placeOrder`. */
    place: (order: NewOrder, startPlacement: StartPlacement) =>
      placeOrder(db, namespace, order, startPlacement),

    /** One of the user's orders (another user's is not found). */
    async get(userId: string, id: string): Promise<Order> {
      const [row] = await db
        .select(columns)
        .from(orders)
        .where(and(eq(orders.id, id), eq(orders.userId, userId)));
      if (!row) throw new OrderNotFoundError(id);
      return row as Order;
    },

    /** Any order (the saga's hooks, WatchOrder after a notification). */
    async byId(id: string): Promise<Order | undefined> {
      const [row] = await db.select(columns).from(orders).where(eq(orders.id, id));
      return row as Order | undefined;
    },

    /**
     * The user's orders (every user's with `undefined`), newest first: by creation time, then id,
     * as legacy lists them (`created_at DESC`). Not by id alone: the orders copied from legacy keep
     * its random (v4) ids. Ties of the same microsecond go by id descending (legacy: ascending),
     * so that `orders_user_created_idx` serves the page backwards. `beforeId` is the last order of
     * the previous page; its row gives the keyset position exactly (the token stays the id).
     */
    async listBefore(
      userId: string | undefined,
      beforeId: string | undefined,
      limit: number,
    ): Promise<Order[]> {
      return (await listQuery(db, userId, beforeId, limit)) as Order[];
    },

    requestCancel: (userId: string, id: string) => requestCancel(db, userId, id),
    beforeStep,
    confirmed: (tx: AnyTransaction, id: string, placed: PlacementData) =>
      confirmOrder(tx, namespace, id, placed),
    cancelled: (
      tx: AnyTransaction,
      id: string,
      placed: PlacementData,
      reason: string,
      money: { paymentRefunded: boolean } = { paymentRefunded: false },
    ) => cancelOrder(tx, namespace, id, placed, reason, money.paymentRefunded),
  };
}

/** Asks the saga to stop; refused once the payment is being captured or the order is done. */
function requestCancel(db: Database<OrdersSchema>, userId: string, id: string): Promise<Order> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .select({ ...columns, captureStarted: orders.captureStarted })
      .from(orders)
      .where(and(eq(orders.id, id), eq(orders.userId, userId)))
      .for("update");
    if (!row) throw new OrderNotFoundError(id);
    const { captureStarted, ...order } = row;
    if (order.status === "cancelled") return order as Order;
    if (order.status === "confirmed") throw new OrderStateError(id, "is confirmed");
    if (captureStarted) throw new OrderStateError(id, "is being paid");
    await tx.update(orders).set({ cancelRequested: true, updatedAt: new Date() }).where(eq(orders.id, id));
    return order as Order;
  });
}

export type OrderStore = ReturnType<typeof createOrderStore>;

/** The store as the use cases see it, with placements starting their saga through `startPlacement`. */
export function orderRepository(store: OrderStore, startPlacement: StartPlacement): OrderRepository {
  return {
    findByKey: (userId, key) => store.findByKey(userId, key),
    place: (order) => store.place(order, startPlacement),
    get: (userId, id) => store.get(userId, id),
    byId: (id) => store.byId(id),
    listBefore: (userId, beforeId, limit) => store.listBefore(userId, beforeId, limit),
    requestCancel: (userId, id) => store.requestCancel(userId, id),
  };
}

/**
 * ListOrders' page query: one user's orders (`orders_user_created_idx`) or every user's
 * (`orders_created_idx`, the admin's list), newest first by (created_at, id), before `beforeId`'s
 * row. Exported for the test that checks each is served by its index, never by a sort.
 */
export function listQuery(
  db: Database<OrdersSchema>,
  userId: string | undefined,
  beforeId: string | undefined,
  limit: number,
) {
  const after = beforeId
    ? sql`(${orders.createdAt}, ${orders.id}) < (select o.created_at, o.id from orders o where o.id = ${beforeId})`
    : undefined;
  return db
    .select(columns)
    .from(orders)
    .where(and(userId ? eq(orders.userId, userId) : undefined, after))
    .orderBy(desc(orders.createdAt), desc(orders.id))
    .limit(limit);
}
