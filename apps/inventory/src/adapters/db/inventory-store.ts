import { type Database, isUniqueViolation, type Queryable, queryRows } from "@meshwork/db";
import { and, asc, eq, gt, sql } from "drizzle-orm";
import {
  canonicalItems,
  InsufficientStockError,
  MAX_UNITS,
  type NewProduct,
  type Product,
  ProductNotFoundError,
  type Reservation,
  ReservationConflictError,
  type ReservationItem,
  ReservationNotFoundError,
  type ReservationState,
  ReservationStateError,
  SkuTakenError,
  type StockAudit,
  StockOutOfRangeError,
  sameItems,
} from "../../domain/inventory.js";
import { type InventorySchema, products, reservationItems, reservations } from "./schema.js";

async function loadReservation(db: Queryable, id: string, lock: boolean): Promise<Reservation | undefined> {
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

/** Why a conditional stock update touched no row: the product is missing, or short of units. */
async function explainShortfall(db: Queryable, productId: string, requested: number): Promise<never> {
  const [p] = await db
    .select({ onHand: products.onHand, reserved: products.reserved })
    .from(products)
    .where(eq(products.id, productId));
  if (!p) throw new ProductNotFoundError(productId);
  throw new InsufficientStockError(productId, requested, p.onHand - p.reserved);
}

/**
 * The inventory's state in Postgres. Every stock change is one conditional UPDATE (`... WHERE
 * on_hand - reserved >= n`), so concurrent reservations of the last units serialise on the row
 * and exactly the ones that fit succeed; the table's checks back that up.
 */
export function createInventoryStore(db: Database<InventorySchema>) {
  const moveReserved = async (
    tx: Queryable,
    reservation: Reservation,
    to: Exclude<ReservationState, "held">,
  ): Promise<Reservation> => {
    for (const item of reservation.items) {
      await tx
        .update(products)
        .set(
          to === "committed"
            ? {
                reserved: sql`${products.reserved} - ${item.quantity}`,
                onHand: sql`${products.onHand} - ${item.quantity}`,
              }
            : { reserved: sql`${products.reserved} - ${item.quantity}` },
        )
        .where(eq(products.id, item.productId));
    }
    await tx
      .update(reservations)
      .set({ state: to, updatedAt: new Date() })
      .where(eq(reservations.id, reservation.id));
    return { ...reservation, state: to };
  };

  return {
    async createProduct(p: NewProduct): Promise<Product> {
      try {
        const [row] = await db
          .insert(products)
          .values({ ...p, received: p.onHand })
          .returning();
        if (!row) throw new Error("insert returned no row");
        return row;
      } catch (err) {
        if (isUniqueViolation(err, "products_sku_unique")) throw new SkuTakenError(p.sku, { cause: err });
        throw err;
      }
    },

    async getProduct(id: string): Promise<Product> {
      const [row] = await db.select().from(products).where(eq(products.id, id));
      if (!row) throw new ProductNotFoundError(id);
      return row;
    },

    async listProductsAfter(afterId: string | undefined, limit: number): Promise<Product[]> {
      return db
        .select()
        .from(products)
        .where(afterId ? gt(products.id, afterId) : undefined)
        .orderBy(asc(products.id))
        .limit(limit);
    },

    /** Adds or removes units on hand; never below what reservations hold. */
    async adjustStock(productId: string, delta: number): Promise<Product> {
      const [row] = await db
        .update(products)
        .set({ onHand: sql`${products.onHand} + ${delta}`, received: sql`${products.received} + ${delta}` })
        .where(
          and(
            eq(products.id, productId),
            sql`${products.onHand} + ${delta} >= ${products.reserved}`,
            // Counts stay exact numbers (bigint columns read as JS numbers).
            sql`${products.received} + ${delta} <= ${MAX_UNITS}`,
            sql`${products.onHand} + ${delta} <= ${MAX_UNITS}`,
          ),
        )
        .returning();
      if (row) return row;
      if (delta > 0) {
        const [p] = await db.select({ id: products.id }).from(products).where(eq(products.id, productId));
        if (p) throw new StockOutOfRangeError(productId, delta);
      }
      return explainShortfall(db, productId, -delta);
    },

    /** Holds every item or none; idempotent by reservation id. */
    async reserve(id: string, requested: readonly ReservationItem[]): Promise<Reservation> {
      const items = canonicalItems(requested);
      return db.transaction(async (tx) => {
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
            .set({ reserved: sql`${products.reserved} + ${item.quantity}` })
            .where(
              and(
                eq(products.id, item.productId),
                sql`${products.onHand} - ${products.reserved} >= ${item.quantity}`,
              ),
            )
            .returning({ id: products.id });
          if (!ok) await explainShortfall(tx, item.productId, item.quantity); // throws: all rolled back
        }
        await tx.insert(reservationItems).values(items.map((i) => ({ reservationId: id, ...i })));
        return { id, state: "held" as const, items, createdAt: inserted.createdAt };
      });
    },

    /**
     * Gives held units back (committed ones back to stock); a no-op when released; records a
     * tombstone for an unknown id.
     */
    async release(id: string): Promise<Reservation> {
      return db.transaction(async (tx) => {
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
            await tx
              .update(products)
              .set({ onHand: sql`${products.onHand} + ${item.quantity}` })
              .where(eq(products.id, item.productId));
          }
          await tx
            .update(reservations)
            .set({ state: "released", updatedAt: new Date() })
            .where(eq(reservations.id, id));
          return { ...r, state: "released" as const };
        }
        return moveReserved(tx, r, "released");
      });
    },

    /** Takes held units out of stock for good; a no-op when committed. */
    async commit(id: string): Promise<Reservation> {
      // A held reservation (every saga's case): one statement changes its state and takes its
      // units out of stock, atomic without a transaction around it (1 round trip, not 6). It
      // locks the reservation row as the transaction below does, so a concurrent release or
      // commit of the same id waits, then finds it committed.
      const moved = await queryRows<{
        created_at: string;
        product_id: string | null;
        quantity: string | number | null;
      }>(
        db,
        sql`with r as (
              update ${reservations} set state = 'committed', updated_at = now()
              where ${reservations.id} = ${id} and ${reservations.state} = 'held'
              returning ${reservations.id}, ${reservations.createdAt}
            ), moved as (
              update ${products} set on_hand = ${products.onHand} - i.quantity,
                                     reserved = ${products.reserved} - i.quantity
              from ${reservationItems} i join r on i.reservation_id = r.id
              where ${products.id} = i.product_id
              returning i.product_id, i.quantity
            )
            select r.created_at, moved.product_id, moved.quantity from r left join moved on true`,
      );
      const [first] = moved;
      if (first) {
        const items = canonicalItems(
          moved
            .filter((m) => m.product_id !== null)
            .map((m) => ({ productId: m.product_id as string, quantity: Number(m.quantity) })),
        );
        return {
          id,
          state: "committed",
          items,
          createdAt: reservations.createdAt.mapFromDriverValue(first.created_at) as Date,
        };
      }
      // Not held: committed already (a no-op), released, or unknown.
      return db.transaction(async (tx) => {
        const r = await loadReservation(tx, id, true);
        if (!r) throw new ReservationNotFoundError(id);
        if (r.state === "committed") return r;
        if (r.state === "released") throw new ReservationStateError(id, r.state, "commit");
        return moveReserved(tx, r, "committed");
      });
    },

    async getReservation(id: string): Promise<Reservation> {
      const r = await loadReservation(db, id, false);
      if (!r) throw new ReservationNotFoundError(id);
      return r;
    },

    /** Per product: its counters, and the units committed and held by reservations. */
    async audit(): Promise<StockAudit[]> {
      const units = (state: ReservationState) =>
        sql<number>`coalesce(sum(${reservationItems.quantity}) filter (where ${reservations.state} = ${state}), 0)`.mapWith(
          Number,
        );
      return db
        .select({
          productId: products.id,
          onHand: products.onHand,
          reserved: products.reserved,
          received: products.received,
          committed: units("committed"),
          held: units("held"),
        })
        .from(products)
        .leftJoin(reservationItems, eq(reservationItems.productId, products.id))
        .leftJoin(reservations, eq(reservations.id, reservationItems.reservationId))
        .groupBy(products.id)
        .orderBy(asc(products.id));
    },
  };
}

export type InventoryStore = ReturnType<typeof createInventoryStore>;
