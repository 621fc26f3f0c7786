import { and, eq, sql } from "drizzle-orm";
import {
  canonicalItems,
  type Reservation,
  ReservationConflictError,
  type ReservationItem,
  ReservationStateError,
  sameItems,
} from "../../domain/inventory.js";
import { loadReservation } from "./reservation-moves.js";
import { products, reservationItems, reservations } from "./schema.js";
import {
  explainShortfall,
  nextVersion,
  type StockRow,
  type StoreContext,
  stockColumns,
} from "./store-context.js";

/** Holding units for a reservation. */
export function createReserve({ db, stockChanged, committed }: StoreContext) {
  return {
    /** Holds every item or none; idempotent by reservation id. */
    async reserve(id: string, requested: readonly ReservationItem[]): Promise<Reservation> {
      const items = canonicalItems(requested);
      const rows: StockRow[] = [];
      const reservation = await db.transaction(async (tx) => {
        // The row first: a concurrent call with the same id waits here for this one's outcome.
        const [inserted] = await tx
          .insert(reservations)
          .values({ id, state: "held" })
          .onConflictDoNothing()
          .returning({ createdAt: reservations.createdAt });
        if (!inserted) {
          const existing = await loadReservation(tx, id, false);
          if (!existing) throw new Error(`reservation ${id} vanished`);
          if (existing.state === "released") throw new ReservationStateError(id, "released", "reserve");
          if (!sameItems(existing.items, items)) throw new ReservationConflictError(id);
          return existing;
        }
        for (const item of items) {
          const [ok] = await tx
            .update(products)
            .set({ reserved: sql`${products.reserved} + ${item.quantity}`, ...nextVersion })
            .where(
              and(
                eq(products.id, item.productId),
                sql`${products.onHand} - ${products.reserved} >= ${item.quantity}`,
              ),
            )
            .returning(stockColumns);
          if (!ok)
            await explainShortfall(tx, item.productId, item.quantity); // throws: all rolled back
          else rows.push(ok);
        }
        await tx.insert(reservationItems).values(items.map((i) => ({ reservationId: id, ...i })));
        await stockChanged(tx, rows);
        return { id, state: "held" as const, items, createdAt: inserted.createdAt };
      });
      return committed(reservation, rows);
    },
  };
}
