import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
  OrderPlacedSchema,
} from "@meshwork/contracts/meshwork/orders/v1/events";
import type { AnyTransaction, Database } from "@meshwork/db";
import { createEnvelope, enqueueEvents } from "@meshwork/events";
import { and, desc, eq, lt, sql, TransactionRollbackError } from "drizzle-orm";
import {
  IdempotencyKeyReusedError,
  type NewOrder,
  type Order,
  OrderNotFoundError,
  OrderStateError,
  type OrderStatus,
  type PlacementData,
} from "../../domain/order.js";
import type { OrderRepository } from "../../domain/ports.js";
import { type OrdersSchema, orders, outbox } from "./schema.js";

export const EVENT_SOURCE = "/meshwork/orders";
/** `NOTIFY` channel of status changes (payload `<order id>:<status>`, in commit order), for WatchOrder. */
export const STATUS_CHANNEL = "order_status";

const columns = {
  id: orders.id,
  userId: orders.userId,
  items: orders.items,
  totalMinor: orders.totalMinor,
  currency: orders.currency,
  status: orders.status,
  cancelReason: orders.cancelReason,
  createdAt: orders.createdAt,
  updatedAt: orders.updatedAt,
};

/** Starts the placement saga of an order inside the placing transaction; see `place`. */
export type StartPlacement = (
  tx: AnyTransaction,
  instance: { id: string; data: PlacementData },
) => Promise<(() => void) | undefined>;

/**
 * Orders in Postgres. Every status change happens in a transaction that also writes the event
 * for it (when there is one) and a `NOTIFY` for WatchOrder; placement also starts the saga.
 */
export function createOrderStore(db: Database<OrdersSchema>, namespace: string) {
  const event = async <S extends DescMessage>(tx: AnyTransaction, schema: S, message: MessageShape<S>) =>
    enqueueEvents(tx, outbox, [createEnvelope(schema, message, { source: EVENT_SOURCE, namespace })]);
  /**
   * The `NOTIFY` of a status change, as a column of the statement's RETURNING list: sent at
   * commit like a separate `select pg_notify(...)`, one round trip fewer per change.
   */
  const notifying = (status: OrderStatus) => ({
    ...columns,
    notified: sql`pg_notify(${STATUS_CHANNEL}, ${orders.id}::text || ${`:${status}`})`,
  });

  const setStatus = async (
    tx: AnyTransaction,
    id: string,
    status: OrderStatus,
    cancelReason?: string,
    at = new Date(),
  ) => {
    const [row] = await tx
      .update(orders)
      .set({ status, updatedAt: at, ...(cancelReason === undefined ? {} : { cancelReason }) })
      .where(eq(orders.id, id))
      .returning(notifying(status));
    if (!row) throw new OrderNotFoundError(id);
    const { notified: _, ...order } = row;
    return order as Order;
  };

  /**
   * The order's last status and its event (which carries the same time), sent together
   * (pipelined on the transaction's connection).
   */
  const finish = async (
    tx: AnyTransaction,
    id: string,
    status: "confirmed" | "cancelled",
    reason: string | undefined,
    record: (at: Date) => Promise<void>,
  ): Promise<void> => {
    const at = new Date();
    await Promise.all([setStatus(tx, id, status, reason, at), record(at)]);
  };

  return {
    async findByKey(userId: string, key: string) {
      const [row] = await db
        .select({ ...columns, requestHash: orders.requestHash })
        .from(orders)
        .where(and(eq(orders.userId, userId), eq(orders.idempotencyKey, key)));
      return row as (Order & { requestHash: string }) | undefined;
    },

    /**
     * Inserts the order, starts its saga and records OrderPlaced, in one transaction. A
     * concurrent placement with the same key wins or loses on the unique key: the loser gets the
     * winner's order (or IdempotencyKeyReusedError when the requests differ).
     */
    async place(
      order: NewOrder,
      /**
       * Starts the placement saga in the transaction (the executor's `startIn`, or `startSaga`);
       * what it returns is called after the commit.
       */
      startPlacement: StartPlacement,
    ): Promise<{ order: Order; created: boolean; run?: () => void }> {
      let run: (() => void) | undefined;
      const createdAt = new Date();
      const created = await db
        .transaction(async (tx) => {
          // The order, its saga (with the first step's check, which reads the order) and its
          // event go out together, pipelined on the transaction's connection in the order they
          // are started: the order first. Another placement that won the key makes the insert
          // a no-op: then the saga and the event are rolled back.
          const inserting = tx
            .insert(orders)
            .values({ ...order, status: "pending", createdAt, updatedAt: createdAt })
            .onConflictDoNothing({ target: [orders.userId, orders.idempotencyKey] })
            .returning(notifying("pending"))
            .then((rows) => rows);
          const [[row], started] = await Promise.all([
            inserting,
            startPlacement(tx, {
              id: order.id,
              data: {
                userId: order.userId,
                items: order.items.map((i) => ({ productId: i.productId, quantity: i.quantity })),
                totalMinor: order.totalMinor,
                currency: order.currency,
              },
            }),
            event(
              tx,
              OrderPlacedSchema,
              create(OrderPlacedSchema, {
                orderId: order.id,
                userId: order.userId,
                total: { amountMinor: BigInt(order.totalMinor), currency: order.currency },
                placeTime: timestampFromDate(createdAt),
              }),
            ),
          ]);
          if (!row) return tx.rollback(); // another placement took the key
          run = started;
          const { notified: _, ...placed } = row;
          return placed as Order;
        })
        .catch((err: unknown) => {
          if (err instanceof TransactionRollbackError) return undefined;
          throw err;
        });
      if (created) return { order: created, created: true, run };
      const existing = await this.findByKey(order.userId, order.idempotencyKey);
      if (!existing) throw new Error(`order for key ${order.idempotencyKey} vanished`);
      if (existing.requestHash !== order.requestHash)
        throw new IdempotencyKeyReusedError(order.idempotencyKey);
      const { requestHash: _h, ...o } = existing;
      return { order: o, created: false };
    },

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

    /** The user's orders (every user's with `undefined`), newest first (ids are UUIDv7). */
    async listBefore(
      userId: string | undefined,
      beforeId: string | undefined,
      limit: number,
    ): Promise<Order[]> {
      return (await db
        .select(columns)
        .from(orders)
        .where(
          and(userId ? eq(orders.userId, userId) : undefined, beforeId ? lt(orders.id, beforeId) : undefined),
        )
        .orderBy(desc(orders.id))
        .limit(limit)) as Order[];
    },

    /** Asks the saga to stop; refused once the payment is being captured or the order is done. */
    async requestCancel(userId: string, id: string): Promise<Order> {
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
        await tx
          .update(orders)
          .set({ cancelRequested: true, updatedAt: new Date() })
          .where(eq(orders.id, id));
        return order as Order;
      });
    },

    /**
     * Before a saga step: a cancellation asked for stops it; before the capture, marks the order
     * as being paid (from then on it cannot be cancelled). Runs in the saga's transaction.
     */
    async beforeStep(tx: AnyTransaction, id: string, step: string): Promise<string | undefined> {
      // Locks the order against a concurrent CancelOrder. Before the capture, the same statement
      // marks it as being paid, unless a cancellation came first.
      const [row] =
        step === "capture"
          ? await tx
              .update(orders)
              .set({ captureStarted: sql`${orders.captureStarted} or not ${orders.cancelRequested}` })
              .where(eq(orders.id, id))
              .returning({ cancelRequested: orders.cancelRequested })
          : await tx
              .select({ cancelRequested: orders.cancelRequested })
              .from(orders)
              .where(eq(orders.id, id))
              .for("update");
      if (!row) return "the order no longer exists";
      if (row.cancelRequested) return "cancelled by the customer";
      return undefined;
    },

    stepDone: (tx: AnyTransaction, id: string, status: OrderStatus) => setStatus(tx, id, status),

    /** Confirms the order and records OrderConfirmed. */
    confirmed: (tx: AnyTransaction, id: string, placed: PlacementData) =>
      finish(tx, id, "confirmed", undefined, (at) =>
        event(
          tx,
          OrderConfirmedSchema,
          create(OrderConfirmedSchema, {
            orderId: id,
            userId: placed.userId,
            total: { amountMinor: BigInt(placed.totalMinor), currency: placed.currency },
            confirmTime: timestampFromDate(at),
          }),
        ),
      ),

    /** Cancels the order with the reason and records OrderCancelled (saying if money was refunded). */
    cancelled: (
      tx: AnyTransaction,
      id: string,
      placed: PlacementData,
      reason: string,
      money: { paymentRefunded: boolean } = { paymentRefunded: false },
    ) =>
      finish(tx, id, "cancelled", reason, (at) =>
        event(
          tx,
          OrderCancelledSchema,
          create(OrderCancelledSchema, {
            orderId: id,
            userId: placed.userId,
            reason,
            cancelTime: timestampFromDate(at),
            paymentRefunded: money.paymentRefunded,
          }),
        ),
      ),
  };
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
