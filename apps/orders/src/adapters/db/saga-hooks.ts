import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OrderCancelledSchema, OrderConfirmedSchema } from "@meshwork/contracts/meshwork/orders/v1/events";
import { type AnyTransaction, prepareStatement } from "@meshwork/db";
import { eq, sql } from "drizzle-orm";
import type { PlacementData } from "../../domain/order.js";
import { recordEvent, setStatus } from "./order-rows.js";
import { orders } from "./schema.js";

// What the placement saga does to an order, in the saga's own transaction.

/**
 * Before a saga step: a cancellation asked for stops it; before the capture, marks the order
 * as being paid (from then on it cannot be cancelled). Resolves with why the saga must stop.
 */
export async function beforeStep(tx: AnyTransaction, id: string, step: string): Promise<string | undefined> {
  // Locks the order against a concurrent CancelOrder. Before the capture, the same statement
  // marks it as being paid, unless a cancellation came first.
  const [row] = await (step === "capture" ? markCapture : lockOrder).execute(tx, { id });
  if (!row) return "the order no longer exists";
  if (row.cancelRequested) return "cancelled by the customer";
  return undefined;
}

// beforeStep's two statements, built by Drizzle once (they run in every saga step's transaction).
const markCapture = prepareStatement<{ cancelRequested: boolean }>("orders_mark_capture", (q) =>
  q
    .update(orders)
    .set({ captureStarted: sql`${orders.captureStarted} or not ${orders.cancelRequested}` })
    .where(eq(orders.id, sql.placeholder("id")))
    .returning({ cancelRequested: orders.cancelRequested }),
);
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
