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
        const createdAt = await insertAndLock(tx, id, items);
        if (!createdAt) {
          // Not inserted: a reservation with this id exists (a concurrent call with the same id
          // waited in the statement for that one's outcome).
          const existing = await loadReservation(tx, id, false);
          if (!existing) throw new Error(`reservation ${id} vanished`);
          if (existing.state === "released") throw new ReservationStateError(id, "released", "reserve");
          if (!sameItems(existing.items, items)) throw new ReservationConflictError(id);
          return existing;
        }
        const held = await holdAll(tx, id, items);
        if (held.length < items.length) {
          const short = items.find((i) => !held.some((r) => r.id === i.productId));
          if (!short) throw new Error(`reservation ${id}: ${held.length} of ${items.length} items held`);
          await explainShortfall(tx, short.productId, short.quantity); // throws: all rolled back
        }
        rows.push(...held);
        await stockChanged(tx, rows);
        return { id, state: "held" as const, items, createdAt };
      });
      return committed(reservation, rows);
    },
  };
}

/**
 * Inserts the reservation (a concurrent call with the same id waits here for that one's outcome)
 * and locks its products in id order (two reservations of the same products cannot deadlock).
 * When the statement returns, every lock it needed is held. Undefined when the id existed.
 */
async function insertAndLock(
  tx: AnyTransaction,
  id: string,
  items: readonly ReservationItem[],
): Promise<Date | undefined> {
  // `locked` is read in the select: Postgres runs a plain SELECT CTE only when it is referenced.
  const [row] = await queryRows<{ created_at: string; locked: string | number }>(
    tx,
    sql`with ins as (
          insert into ${reservations} (id, state) values (${id}, 'held')
          on conflict do nothing
          returning created_at
        ), locked as (
          select p.id from ${products} p
          where p.id = any(${sql.param(items.map((i) => i.productId))}::uuid[]) and exists (select 1 from ins)
          order by p.id
          for update
        )
        select ins.created_at, (select count(*) from locked) as locked from ins`,
  );
  return row ? (reservations.createdAt.mapFromDriverValue(row.created_at) as Date) : undefined;
}

/**
 * Holds each item's units where enough are free, and records the items when every item was
 * held; the rows of the products held (fewer than the items when one is missing or short: the
 * caller throws, and the transaction rolls the rest back). A statement of its own, after
 * {@link insertAndLock}: a statement reads the rows as of its start (READ COMMITTED), and the
 * stock test must see what a transaction that held a lock this one waited for committed (a
 * release that freed the units). Round trips per reservation 6 -> 5 with BEGIN, StockChanged's
 * outbox row and COMMIT (counted by tools/bench's wire counter, MESHWORK_BENCH_COUNT_WIRE=1).
 */
async function holdAll(
  tx: AnyTransaction,
  id: string,
  items: readonly ReservationItem[],
): Promise<StockRow[]> {
  const result = await queryRows<{
    id: string;
    on_hand: string | number;
    reserved: string | number;
    version: string | number;
    legacy_synced: boolean;
  }>(
    tx,
    sql`with req as (
          select * from unnest(${sql.param(items.map((i) => i.productId))}::uuid[],
                               ${sql.param(items.map((i) => String(i.quantity)))}::bigint[]) as r(product_id, quantity)
        ), moved as (
          update ${products} p set reserved = p.reserved + req.quantity, version = p.version + 1
          from req
          where p.id = req.product_id and p.on_hand - p.reserved >= req.quantity
          returning p.id, p.on_hand, p.reserved, p.version, p.legacy_synced
        ), recorded as (
          insert into ${reservationItems} (reservation_id, product_id, quantity)
          select ${id}::uuid, product_id, quantity from req
          where (select count(*) from moved) = ${items.length}
        )
        select id, on_hand, reserved, version, legacy_synced from moved`,
  );
  return result.map((r) => ({
    id: r.id,
    onHand: Number(r.on_hand),
    reserved: Number(r.reserved),
    version: Number(r.version),
    legacySynced: r.legacy_synced === true,
  }));
}
