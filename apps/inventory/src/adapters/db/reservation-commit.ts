import { queryRows } from "@meshwork/db";
import { sql } from "drizzle-orm";
import {
  canonicalItems,
  type Reservation,
  ReservationNotFoundError,
  ReservationStateError,
} from "../../domain/inventory.js";
import { loadReservation, moveReserved } from "./reservation-moves.js";
import { products, reservationItems, reservations } from "./schema.js";
import type { StockRow, StoreContext } from "./store-context.js";

/** Taking a reservation's units out of stock for good, and reading a reservation. */
export function createCommit(ctx: StoreContext) {
  const { db, committed } = ctx;
  return {
    /** Takes held units out of stock for good; a no-op when committed. */
    async commit(id: string): Promise<Reservation> {
      const fast = await commitHeld(ctx, id);
      if (fast) return committed(fast.reservation, fast.rows);
      // Not held: committed already (a no-op), released, or unknown.
      const rows: StockRow[] = [];
      const reservation = await db.transaction(async (tx) => {
        const r = await loadReservation(tx, id, true);
        if (!r) throw new ReservationNotFoundError(id);
        if (r.state === "committed") return r;
        if (r.state === "released") throw new ReservationStateError(id, r.state, "commit");
        const moved = await moveReserved(ctx, tx, r, "committed");
        rows.push(...moved.rows);
        return moved.reservation;
      });
      return committed(reservation, rows);
    },

    async getReservation(id: string): Promise<Reservation> {
      const r = await loadReservation(db, id, false);
      if (!r) throw new ReservationNotFoundError(id);
      return r;
    },
  };
}

/**
 * Commits a held reservation (every saga's case): one statement changes its state and takes its
 * units out of stock, then StockChanged rows are written in the same transaction. The
 * statement locks the reservation row as `commit`'s other path does, so a concurrent
 * release or commit of the same id waits, then finds it committed. Undefined when not held.
 */
async function commitHeld(
  { db, stockChanged }: StoreContext,
  id: string,
): Promise<{ reservation: Reservation; rows: StockRow[] } | undefined> {
  return db.transaction(async (tx) => {
    const moved = await queryRows<{
      created_at: string;
      product_id: string | null;
      quantity: string | number | null;
      on_hand: string | number | null;
      reserved: string | number | null;
      version: string | number | null;
      legacy_synced: boolean | null;
    }>(
      tx,
      sql`with r as (
            update ${reservations} set state = 'committed', updated_at = now()
            where ${reservations.id} = ${id} and ${reservations.state} = 'held'
            returning ${reservations.id}, ${reservations.createdAt}
          ), moved as (
            update ${products} set on_hand = ${products.onHand} - i.quantity,
                                   reserved = ${products.reserved} - i.quantity,
                                   version = ${products.version} + 1
            from ${reservationItems} i join r on i.reservation_id = r.id
            where ${products.id} = i.product_id
            returning i.product_id, i.quantity, ${products.onHand}, ${products.reserved}, ${products.version},
                      ${products.legacySynced}
          )
          select r.created_at, moved.product_id, moved.quantity, moved.on_hand, moved.reserved, moved.version,
                 moved.legacy_synced
          from r left join moved on true`,
    );
    const [first] = moved;
    if (!first) return undefined;
    const rows: StockRow[] = moved
      .filter((m) => m.product_id !== null)
      .map((m) => ({
        id: m.product_id as string,
        onHand: Number(m.on_hand),
        reserved: Number(m.reserved),
        version: Number(m.version),
        legacySynced: m.legacy_synced === true,
      }));
    await stockChanged(tx, rows);
    const items = canonicalItems(
      moved
        .filter((m) => m.product_id !== null)
        .map((m) => ({ productId: m.product_id as string, quantity: Number(m.quantity) })),
    );
    const reservation: Reservation = {
      id,
      state: "committed",
      items,
      createdAt: reservations.createdAt.mapFromDriverValue(first.created_at) as Date,
    };
    return { reservation, rows };
  });
}
