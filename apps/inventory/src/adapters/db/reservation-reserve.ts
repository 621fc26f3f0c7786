import { type AnyTransaction, queryRows } from "@meshwork/db";
import { sql } from "drizzle-orm";
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
import { explainShortfall, type StockRow, type StoreContext } from "./store-context.js";

/** Holding units for a reservation. */
export function createReserve({ db, stockChanged, committed }: StoreContext) {
  return {
    /** Holds every item or none; idempotent by reservation id. */
    async reserve(id: string, requested: readonly ReservationItem[]): Promise<Reservation> {
      const items = canonicalItems(requested);
      const rows: StockRow[] = [];
      const reservation = await db.transaction(async (tx) => {
        const held = await holdAll(tx, id, items);
        if (!held) {
          // Not inserted: a reservation with this id exists (a concurrent call with the same id
          // waited in the statement for that one's outcome).
          const existing = await loadReservation(tx, id, false);
          if (!existing) throw new Error(`reservation ${id} vanished`);
          if (existing.state === "released") throw new ReservationStateError(id, "released", "reserve");
          if (!sameItems(existing.items, items)) throw new ReservationConflictError(id);
          return existing;
        }
        if (held.rows.length < items.length) {
          const short = items.find((i) => !held.rows.some((r) => r.id === i.productId));
          if (short) await explainShortfall(tx, short.productId, short.quantity); // throws: all rolled back
        }
        rows.push(...held.rows);
        await stockChanged(tx, rows);
        return { id, state: "held" as const, items, createdAt: held.createdAt };
      });
      return committed(reservation, rows);
    },
  };
}

/**
 * One statement for what took one per step (the reservation row, an update per item, the items):
 * inserts the reservation (a concurrent call with the same id waits here for that one's
 * outcome), locks the products in id order (two reservations of the same products cannot
 * deadlock), holds each item's units where enough are free, and records the items when every
 * item was held. Undefined when the id existed; otherwise the rows of the products held (fewer
 * than the items when one is missing or short: the caller throws, and the transaction rolls the
 * rest back). Round trips per reservation 6 -> 4 with BEGIN, StockChanged's outbox row and COMMIT
 * (counted by tools/bench's wire counter, MESHWORK_BENCH_COUNT_WIRE=1).
 */
async function holdAll(
  tx: AnyTransaction,
  id: string,
  items: readonly ReservationItem[],
): Promise<{ createdAt: Date; rows: StockRow[] } | undefined> {
  const result = await queryRows<{
    created_at: string;
    id: string | null;
    on_hand: string | number | null;
    reserved: string | number | null;
    version: string | number | null;
    legacy_synced: boolean | null;
  }>(
    tx,
    sql`with ins as (
          insert into ${reservations} (id, state) values (${id}, 'held')
          on conflict do nothing
          returning created_at
        ), req as (
          select * from unnest(${sql.param(items.map((i) => i.productId))}::uuid[],
                               ${sql.param(items.map((i) => String(i.quantity)))}::bigint[]) as r(product_id, quantity)
        ), locked as (
          select p.id from ${products} p
          where p.id in (select product_id from req) and exists (select 1 from ins)
          order by p.id
          for update
        ), moved as (
          update ${products} p set reserved = p.reserved + req.quantity, version = p.version + 1
          from req, locked
          where p.id = req.product_id and locked.id = p.id and p.on_hand - p.reserved >= req.quantity
          returning p.id, p.on_hand, p.reserved, p.version, p.legacy_synced
        ), recorded as (
          insert into ${reservationItems} (reservation_id, product_id, quantity)
          select ${id}::uuid, product_id, quantity from req
          where exists (select 1 from ins) and (select count(*) from moved) = ${items.length}
        )
        select ins.created_at, moved.id, moved.on_hand, moved.reserved, moved.version, moved.legacy_synced
        from ins left join moved on true`,
  );
  const [first] = result;
  if (!first) return undefined;
  return {
    createdAt: reservations.createdAt.mapFromDriverValue(first.created_at) as Date,
    rows: result
      .filter((r) => r.id !== null)
      .map((r) => ({
        id: r.id as string,
        onHand: Number(r.on_hand),
        reserved: Number(r.reserved),
        version: Number(r.version),
        legacySynced: r.legacy_synced === true,
      })),
  };
}
