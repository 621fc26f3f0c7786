import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OrderCancelledSchema, OrderConfirmedSchema } from "@meshwork/contracts/meshwork/orders/v1/events";
import { type AnyTransaction, prepareStatement } from "@meshwork/db";
import { eq, sql } from "drizzle-orm";
import type { OrderStatus, PlacementData } from "../../domain/order.js";
import { recordEvent, STATUS_CHANNEL, setStatus } from "./order-rows.js";
import { orders } from "./schema.js";

// What the placement saga does to an order, in the saga's own transaction.

/**
 * Before a saga step: a cancellation asked for stops it; otherwise the order takes the status of
 * the steps done so far (the step before is recorded as done in this transaction, or was in an
 * earlier one), and before the capture it is marked as being paid (from then on it cannot be
 * cancelled). Resolves with why the saga must stop.
 *
 * One statement per step: the status update locks the order against a concurrent CancelOrder
 * and reads its cancellation, and the placement saga leaves `onStepDone` out (its status is set
 * here, in the same transaction). Orders' statements per order 22.2 -> 18.1 with
 * the other cuts of that commit (tools/bench's wire counter, MESHWORK_BENCH_COUNT_WIRE=1).
 */
export async function beforeStep(tx: AnyTransaction, id: string, step: string): Promise<string | undefined> {
  const reached = STATUS_BEFORE[step];
  const [row] = await (step === "capture" ? markCapture : reached ? advance : lockOrder).execute(tx, {
    id,
    status: reached ?? "pending",
    // A string: the placeholder is in plain SQL (no column encodes it), and the driver takes no Date.
    at: new Date().toISOString(),
  });
  if (!row) return "the order no longer exists";
  if (row.cancelRequested) return "cancelled by the customer";
  return undefined;
}

/** The status an order has once the steps before `step` are done (the first step: as placed). */
const STATUS_BEFORE: Readonly<Record<string, OrderStatus>> = {
  authorize: "stock_reserved",
  capture: "payment_authorized",
};

/**
 * The order moved on to `status`, locked, with its cancellation read, and the `NOTIFY` of the
 * change for WatchOrder. A step run again (a retry, a restart) sets the status it already has:
 * its time is left as it was (the order's last update), and WatchOrder skips the repeated status.
 */
function advanceTo(capture: boolean) {
  return prepareStatement<{ cancelRequested: boolean; notified: unknown }>(
    capture ? "orders_advance_capture" : "orders_advance",
    (q) =>
      q
        .update(orders)
        .set({
          // In plain SQL, as Drizzle's types take no placeholder as a column's value (same `$1`;
          // a text column's encoder changes nothing).
          status: sql<OrderStatus>`${sql.placeholder("status")}`,
          updatedAt: sql`case when ${orders.status} = ${sql.placeholder("status")} then ${orders.updatedAt} else ${sql.placeholder("at")}::timestamptz end`,
          ...(capture
            ? { captureStarted: sql`${orders.captureStarted} or not ${orders.cancelRequested}` }
            : {}),
        })
        .where(eq(orders.id, sql.placeholder("id")))
        .returning({
          cancelRequested: orders.cancelRequested,
          notified: sql`pg_notify(${STATUS_CHANNEL}, ${orders.id}::text || ':' || ${sql.placeholder("status")}::text)`,
        }),
  );
}

// beforeStep's statements, built by Drizzle once (they run in every saga step's transaction).
const advance = advanceTo(false);
const markCapture = advanceTo(true);
const lockOrder = prepareStatement<{ cancelRequested: boolean }>("orders_lock", (q) =>
  q
    .select({ cancelRequested: orders.cancelRequested })
    .from(orders)
    .where(eq(orders.id, sql.placeholder("id")))
    .for("update"),
);

/**
 * The order's last status and its event (which carries the same time), sent together
 * (pipelined on the transaction's connection).
 */
async function finish(
  tx: AnyTransaction,
  id: string,
  status: "confirmed" | "cancelled",
  reason: string | undefined,
  record: (at: Date) => Promise<void>,
): Promise<void> {
  const at = new Date();
  await Promise.all([setStatus(tx, id, status, reason, at), record(at)]);
}

/** Confirms the order and records OrderConfirmed. */
export function confirmOrder(tx: AnyTransaction, namespace: string, id: string, placed: PlacementData) {
  return finish(tx, id, "confirmed", undefined, (at) =>
    recordEvent(
      tx,
      namespace,
      OrderConfirmedSchema,
      create(OrderConfirmedSchema, {
        orderId: id,
        userId: placed.userId,
        total: { amountMinor: BigInt(placed.totalMinor), currency: placed.currency },
        confirmTime: timestampFromDate(at),
      }),
    ),
  );
}

/** Cancels the order with the reason and records OrderCancelled (saying if money was refunded). */
export function cancelOrder(
  tx: AnyTransaction,
  namespace: string,
  id: string,
  placed: PlacementData,
  reason: string,
  paymentRefunded: boolean,
) {
  return finish(tx, id, "cancelled", reason, (at) =>
    recordEvent(
      tx,
      namespace,
      OrderCancelledSchema,
      create(OrderCancelledSchema, {
        orderId: id,
        userId: placed.userId,
        reason,
        cancelTime: timestampFromDate(at),
        paymentRefunded,
      }),
    ),
  );
}
