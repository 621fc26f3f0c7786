import { eq, sql } from "drizzle-orm";
import type { Reservation } from "../../domain/inventory.js";
import { loadReservation, moveReserved } from "./reservation-moves.js";
import { products, reservations } from "./schema.js";
import { nextVersion, type StockRow, type StoreContext, stockColumns } from "./store-context.js";

/** Giving a reservation's units back. */
export function createRelease(ctx: StoreContext) {
  const { db, stockChanged, committed } = ctx;
  return {
    /**
     * Gives held units back (committed ones back to stock); a no-op when released; records a
     * tombstone for an unknown id.
     */
    async release(id: string): Promise<Reservation> {
      const rows: StockRow[] = [];
      const reservation = await db.transaction(async (tx) => {
        const [tombstone] = await tx
          .insert(reservations)
          .values({ id, state: "released" })
          .onConflictDoNothing()
          .returning({ createdAt: reservations.createdAt });
        if (tombstone) return { id, state: "released" as const, items: [], createdAt: tombstone.createdAt };
        const r = await loadReservation(tx, id, true);
        if (!r) throw new Error(`reservation ${id} vanished`);
        if (r.state === "released") return r;
        if (r.state === "committed") {
          // Its units left stock: they come back (a compensation after the commit).
          for (const item of r.items) {
            const [row] = await tx
              .update(products)
              .set({ onHand: sql`${products.onHand} + ${item.quantity}`, ...nextVersion })
              .where(eq(products.id, item.productId))
              .returning(stockColumns);
            if (row) rows.push(row);
          }
          await tx
            .update(reservations)
            .set({ state: "released", updatedAt: new Date() })
            .where(eq(reservations.id, id));
          await stockChanged(tx, rows);
          return { ...r, state: "released" as const };
        }
        const moved = await moveReserved(ctx, tx, r, "released");
        rows.push(...moved.rows);
        return moved.reservation;
      });
      return committed(reservation, rows);
    },
  };
}
