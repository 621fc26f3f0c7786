import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ProductUpdatedSchema, StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import {
  type AnyTransaction,
  type Database,
  isUniqueViolation,
  type Queryable,
  queryRows,
} from "@meshwork/db";
import { createEnvelope, enqueueEvents } from "@meshwork/events";
import { and, asc, eq, gt, sql } from "drizzle-orm";
import {
  canonicalItems,
  InsufficientStockError,
  MAX_UNITS,
  type NewProduct,
  type Product,
  type ProductChanged,
  type ProductChanges,
  ProductNotFoundError,
  type ProductRef,
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
import { type InventorySchema, outbox, products, reservationItems, reservations } from "./schema.js";

const EVENT_SOURCE = "meshwork/inventory";

/** A product row's stock after a change, as StockChanged reports it. */
interface StockRow {
  id: string;
  onHand: number;
  reserved: number;
  version: number;
}

const stockColumns = {
  id: products.id,
  onHand: products.onHand,
  reserved: products.reserved,
  version: products.version,
};

/** Bumps the row's version: every change of a product does. */
const nextVersion = { version: sql`${products.version} + 1` };

export interface InventoryStoreOptions {
  /** `EVENTS_NAMESPACE`: the prefix of the events' subjects. */
  namespace: string;
  /** Called after a transaction that changed products committed (the service drops its cache entries). */
  onChanged?(changes: readonly ProductChanged[]): void;
}

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
export function createInventoryStore(db: Database<InventorySchema>, options: InventoryStoreOptions) {
  const { namespace } = options;
  /** StockChanged for each changed row, in the transaction of the change. */
  const stockChanged = (tx: AnyTransaction, rows: readonly StockRow[]) =>
    enqueueEvents(
      tx,
      outbox,
      rows.map((r) =>
        createEnvelope(
          StockChangedSchema,
          create(StockChangedSchema, {
            productId: r.id,
            version: BigInt(r.version),
            onHand: BigInt(r.onHand),
            reserved: BigInt(r.reserved),
            available: BigInt(r.onHand - r.reserved),
          }),
          { source: EVENT_SOURCE, namespace },
        ),
      ),
    );
  /** Tells the service, once the transaction committed, which products changed. */
  const committed = <T>(result: T, rows: readonly { id: string; version: number }[]): T => {
    if (rows.length > 0) options.onChanged?.(rows.map((r) => ({ productId: r.id, version: r.version })));
    return result;
  };

  const moveReserved = async (
    tx: AnyTransaction,
    reservation: Reservation,
    to: Exclude<ReservationState, "held">,
  ): Promise<{ reservation: Reservation; rows: StockRow[] }> => {
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

    async listProductRefsAfter(afterId: string | undefined, limit: number): Promise<ProductRef[]> {
      return db
        .select({ id: products.id, version: products.version })
        .from(products)
        .where(afterId ? gt(products.id, afterId) : undefined)
        .orderBy(asc(products.id))
        .limit(limit);
    },

    async getProducts(ids: readonly string[]): Promise<Product[]> {
      if (ids.length === 0) return [];
      return db
        .select()
        .from(products)
        .where(sql`${products.id} = any(${sql.param([...ids])}::uuid[])`)
        .orderBy(asc(products.id));
    },

    /** Changes name and/or price; ProductUpdated goes out with the change. */
    async updateProduct(id: string, changes: ProductChanges): Promise<Product> {
      const row = await db.transaction(async (tx) => {
        const [updated] = await tx
          .update(products)
          .set({ ...changes, ...nextVersion })
          .where(eq(products.id, id))
          .returning();
        if (!updated) throw new ProductNotFoundError(id);
        await enqueueEvents(tx, outbox, [
          createEnvelope(
            ProductUpdatedSchema,
            create(ProductUpdatedSchema, {
              productId: updated.id,
              version: BigInt(updated.version),
              name: updated.name,
              price: { amountMinor: BigInt(updated.priceMinor), currency: updated.currency },
              updateTime: timestampNow(),
            }),
            { source: EVENT_SOURCE, namespace },
          ),
        ]);
        return updated;
      });
      return committed(row, [row]);
    },

    /** Adds or removes units on hand; never below what reservations hold. */
    async adjustStock(productId: string, delta: number): Promise<Product> {
      const row = await db.transaction(async (tx) => {
        const [changed] = await tx
          .update(products)
          .set({
            onHand: sql`${products.onHand} + ${delta}`,
            received: sql`${products.received} + ${delta}`,
            ...nextVersion,
          })
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
        if (changed) {
          await stockChanged(tx, [changed]);
          return changed;
        }
        if (delta > 0) {
          const [p] = await tx.select({ id: products.id }).from(products).where(eq(products.id, productId));
          if (p) throw new StockOutOfRangeError(productId, delta);
        }
        return explainShortfall(tx, productId, -delta);
      });
      return committed(row, [row]);
    },

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
        const moved = await moveReserved(tx, r, "released");
        rows.push(...moved.rows);
        return moved.reservation;
      });
      return committed(reservation, rows);
    },

    /** Takes held units out of stock for good; a no-op when committed. */
    async commit(id: string): Promise<Reservation> {
      // A held reservation (every saga's case): one statement changes its state and takes its
      // units out of stock, then StockChanged rows are written in the same transaction. The
      // statement locks the reservation row as the transaction below does, so a concurrent
      // release or commit of the same id waits, then finds it committed.
      const fast = await db.transaction(async (tx) => {
        const moved = await queryRows<{
          created_at: string;
          product_id: string | null;
          quantity: string | number | null;
          on_hand: string | number | null;
          reserved: string | number | null;
          version: string | number | null;
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
                returning i.product_id, i.quantity, ${products.onHand}, ${products.reserved}, ${products.version}
              )
              select r.created_at, moved.product_id, moved.quantity, moved.on_hand, moved.reserved, moved.version
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
      if (fast) return committed(fast.reservation, fast.rows);
      // Not held: committed already (a no-op), released, or unknown.
      const rows: StockRow[] = [];
      const reservation = await db.transaction(async (tx) => {
        const r = await loadReservation(tx, id, true);
        if (!r) throw new ReservationNotFoundError(id);
        if (r.state === "committed") return r;
        if (r.state === "released") throw new ReservationStateError(id, r.state, "commit");
        const moved = await moveReserved(tx, r, "committed");
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
