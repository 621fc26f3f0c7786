import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { OrderChanged } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type AnyTransaction, claimSequence } from "@meshwork/db";
import { and, eq, ne } from "drizzle-orm";
import { type OrderItem, type OrderStatus, requestHash } from "../../domain/order.js";
import { legacyOrderSync, orders } from "./schema.js";

/** What applying one captured legacy order did. */
export type LegacyOrderOutcome = "created" | "updated" | "stale" | "mesh-owned";

/** Legacy confirms an order at once (or it is cancelled): it has no in-flight states to copy. */
const TERMINAL_STATUS: Readonly<Record<string, OrderStatus>> = {
  ORDER_STATUS_CONFIRMED: "confirmed",
  ORDER_STATUS_CANCELLED: "cancelled",
};

/** A captured order whose status is not one the orders service can hold without a saga. */
export class LegacyOrderStatusError extends Error {
  override readonly name = "LegacyOrderStatusError";
  constructor(orderId: string, status: string) {
    super(
      `legacy order ${orderId} has status "${status}": only ORDER_STATUS_CONFIRMED or ORDER_STATUS_CANCELLED can be copied (no saga runs for a legacy order)`,
    );
  }
}

/**
 * The key the copy is stored under: legacy's own (a repeat of the client's PlaceOrder on the mesh
 * then finds this order), unless one of the user's mesh orders already has it.
 */
async function keyFor(tx: AnyTransaction, e: OrderChanged): Promise<string> {
  const [taken] = await tx
    .select({ id: orders.id })
    .from(orders)
    .where(
      and(eq(orders.userId, e.userId), eq(orders.idempotencyKey, e.idempotencyKey), ne(orders.id, e.orderId)),
    )
    .limit(1);
  return taken || !e.idempotencyKey ? `legacy:${e.orderId}` : e.idempotencyKey;
}

/**
 * Applies an order captured in the legacy monolith (strangler fig: orders follow the traffic), in
 * the consumer's transaction. The order keeps legacy's id, user, lines, total, times and terminal
 * status, so `GET /api/orders/{id}` and `GET /api/users/{id}/orders` answer the same on both
 * sides; it is stored as it is: no saga, no event, no stock or payment effect (legacy took the
 * stock and the payment). Idempotent and order-proof: a capture not newer than the one recorded
 * for the order is `stale`. An order the mesh placed itself (no sync row: it came to legacy
 * through the reverse sync, which legacy never captures back) is left alone: `mesh-owned`.
 */
export async function applyLegacyOrder(tx: AnyTransaction, e: OrderChanged): Promise<LegacyOrderOutcome> {
  const status = TERMINAL_STATUS[e.status];
  if (!status) throw new LegacyOrderStatusError(e.orderId, e.status);
  const [row] = await tx.select({ id: orders.id }).from(orders).where(eq(orders.id, e.orderId)).for("update");
  if (row) {
    const [synced] = await tx
      .select({ orderId: legacyOrderSync.orderId })
      .from(legacyOrderSync)
      .where(eq(legacyOrderSync.orderId, e.orderId));
    if (!synced) return "mesh-owned";
  }
  if (!(await claimSequence(tx, legacyOrderSync, legacyOrderSync.orderId, e.orderId, Number(e.sequence))))
    return "stale";
  const currency = e.total?.currency ?? "";
  const items: OrderItem[] = e.items
    .map((i) => ({
      productId: i.productId,
      quantity: Number(i.quantity),
      unitPriceMinor: Number(i.unitPriceMinor),
    }))
    .sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
  const createdAt = e.createTime ? timestampDate(e.createTime) : new Date();
  const state = {
    userId: e.userId,
    items,
    totalMinor: Number(e.total?.amountMinor ?? 0n),
    currency,
    status,
    createdAt,
    updatedAt: e.updateTime ? timestampDate(e.updateTime) : createdAt,
  };
  if (row) {
    await tx.update(orders).set(state).where(eq(orders.id, e.orderId));
    return "updated";
  }
  await tx.insert(orders).values({
    id: e.orderId,
    idempotencyKey: await keyFor(tx, e),
    requestHash: requestHash(items),
    ...state,
  });
  return "created";
}
