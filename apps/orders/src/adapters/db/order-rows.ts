import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { type AnyTransaction, prepareStatement } from "@meshwork/db";
import { createEnvelope, enqueueEvents } from "@meshwork/events";
import { eq, sql } from "drizzle-orm";
import { type Order, OrderNotFoundError, type OrderStatus } from "../../domain/order.js";
import { orders, outbox } from "./schema.js";

export const EVENT_SOURCE = "/meshwork/orders";
/** `NOTIFY` channel of status changes (payload `<order id>:<status>`, in commit order), for WatchOrder. */
export const STATUS_CHANNEL = "order_status";

/** The columns that make an `Order`. */
export const columns = {
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

/** Writes one event into the outbox, in the caller's transaction. */
export async function recordEvent<S extends DescMessage>(
  tx: AnyTransaction,
  namespace: string,
  schema: S,
  message: MessageShape<S>,
): Promise<void> {
  await enqueueEvents(tx, outbox, [createEnvelope(schema, message, { source: EVENT_SOURCE, namespace })]);
}

/**
 * The `NOTIFY` of a status change, as a column of the statement's RETURNING list: sent at
 * commit like a separate `select pg_notify(...)`, one round trip fewer per change.
 */
export function notifying(status: OrderStatus) {
  return {
    ...columns,
    notified: sql`pg_notify(${STATUS_CHANNEL}, ${orders.id}::text || ${`:${status}`})`,
  };
}

/**
 * The status update (with or without a cancel reason), built by Drizzle once per shape: it ends
 * each order, in the saga's last transaction (the statuses on the way are set by the steps'
 * checks, saga-hooks.ts). `notifying`'s NOTIFY names the status as a
 * parameter here (the statement serves every status).
 */
function prepareSetStatus(withReason: boolean) {
  return prepareStatement<Order & { notified: unknown }>(
    withReason ? "orders_set_status_reason" : "orders_set_status",
    (q) =>
      q
        .update(orders)
        .set({
          status: sql.placeholder("status"),
          updatedAt: sql.placeholder("at"),
          ...(withReason ? { cancelReason: sql.placeholder("reason") } : {}),
        } as unknown as Partial<typeof orders.$inferInsert>)
        .where(eq(orders.id, sql.placeholder("id")))
        .returning({
          ...columns,
          notified: sql`pg_notify(${STATUS_CHANNEL}, ${orders.id}::text || ':' || ${sql.placeholder("status")}::text)`,
        }),
  );
}
const setStatusStatements = { plain: prepareSetStatus(false), withReason: prepareSetStatus(true) };

/** Changes an order's status (and its cancel reason), with the NOTIFY for WatchOrder. */
export async function setStatus(
  tx: AnyTransaction,
  id: string,
  status: OrderStatus,
  cancelReason?: string,
  at = new Date(),
): Promise<Order> {
  const [row] =
    cancelReason === undefined
      ? await setStatusStatements.plain.execute(tx, { id, status, at })
      : await setStatusStatements.withReason.execute(tx, { id, status, at, reason: cancelReason });
  if (!row) throw new OrderNotFoundError(id);
  const { notified: _, ...order } = row;
  return order as Order;
}
