import type { AnyTransaction, Queryable } from "@meshwork/db";
import { asc, eq, sql } from "drizzle-orm";
import type { Reservation, ReservationState } from "../../domain/inventory.js";
import { products, reservationItems, reservations } from "./schema.js";
import { nextVersion, type StockRow, type StoreContext, stockColumns } from "./store-context.js";

export async function loadReservation(
  db: Queryable,
  id: string,
  lock: boolean,
): Promise<Reservation | undefined> {
  const q = db.select().from(reservations).where(eq(reservations.id, id));
  const [row] = await (lock ? q.for("update") : q);
  if (!row) return undefined;
  const items = await db
    .select({ productId: reservationItems.productId, quantity: reservationItems.quantity })
    .from(reservationItems)
    .where(eq(reservationItems.reservationId, id))
    .orderBy(asc(reservationItems.productId));
  return { id: row.id, state: row.state, items, createdAt: row.createdAt };
}

/** Moves a held reservation's units out of `reserved` (and out of stock when committed), in `tx`. */
export async function moveReserved(
  { stockChanged }: StoreContext,
  tx: AnyTransaction,
  reservation: Reservation,
  to: Exclude<ReservationState, "held">,
): Promise<{ reservation: Reservation; rows: StockRow[] }> {
  const rows: StockRow[] = [];
  for (const item of reservation.items) {
    const [row] = await tx
      .update(products)
      .set(
        to === "committed"
          ? {
              reserved: sql`${products.reserved} - ${item.quantity}`,
              onHand: sql`${products.onHand} - ${item.quantity}`,
              ...nextVersion,
            }
          : { reserved: sql`${products.reserved} - ${item.quantity}`, ...nextVersion },
      )
      .where(eq(products.id, item.productId))
      .returning(stockColumns);
    if (row) rows.push(row);
  }
  await tx
    .update(reservations)
    .set({ state: to, updatedAt: new Date() })
    .where(eq(reservations.id, reservation.id));
  await stockChanged(tx, rows);
  return { reservation: { ...reservation, state: to }, rows };
}
