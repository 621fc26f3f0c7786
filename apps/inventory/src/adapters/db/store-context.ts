import { create } from "@bufbuild/protobuf";
import { StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import { type AnyTransaction, type Database, type Queryable, queryRows } from "@meshwork/db";
import { createEnvelope, enqueueEvents } from "@meshwork/events";
import { eq, sql } from "drizzle-orm";
import { InsufficientStockError, type ProductChanged, ProductNotFoundError } from "../../domain/inventory.js";
import { type InventorySchema, outbox, products } from "./schema.js";

export const EVENT_SOURCE = "meshwork/inventory";

/** A product row's stock after a change, as StockChanged reports it. */
export interface StockRow {
  id: string;
  onHand: number;
  reserved: number;
  version: number;
  /** The product came from legacy: the change is recorded for its reverse sync (markPublished). */
  legacySynced: boolean;
}

export const stockColumns = {
  id: products.id,
  onHand: products.onHand,
  reserved: products.reserved,
  version: products.version,
  legacySynced: products.legacySynced,
};

/** Bumps the row's version: every change of a product does. */
export const nextVersion = { version: sql`${products.version} + 1` };

export interface InventoryStoreOptions {
  /** `EVENTS_NAMESPACE`: the prefix of the events' subjects. */
  namespace: string;
  /** Called after a transaction that changed products committed (the service drops its cache entries). */
  onChanged?(changes: readonly ProductChanged[]): void;
}

/** What every part of the store shares: the database, the events' namespace and the change hooks. */
export interface StoreContext {
  db: Database<InventorySchema>;
  namespace: string;
  /** StockChanged for each changed row, in the transaction of the change. */
  stockChanged(tx: AnyTransaction, rows: readonly StockRow[]): Promise<void>;
  /** Tells the service, once the transaction committed, which products changed. */
  committed<T>(result: T, rows: readonly { id: string; version: number }[]): T;
}

export function createStoreContext(
  db: Database<InventorySchema>,
  options: InventoryStoreOptions,
): StoreContext {
  const { namespace } = options;
  /** StockChanged for each changed row, in the transaction of the change. */
  const stockChanged = async (tx: AnyTransaction, rows: readonly StockRow[]) => {
    const heldBack = await collectHeldBack(tx, rows);
    await enqueueEvents(
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
            ...(heldBack.get(r.id) ? { heldBack: BigInt(heldBack.get(r.id) ?? 0) } : {}),
          }),
          { source: EVENT_SOURCE, namespace },
        ),
      ),
    );
  };
  /** Tells the service, once the transaction committed, which products changed. */
  const committed = <T>(result: T, rows: readonly { id: string; version: number }[]): T => {
    if (rows.length > 0) options.onChanged?.(rows.map((r) => ({ productId: r.id, version: r.version })));
    return result;
  };
  return { db, namespace, stockChanged, committed };
}

/**
 * Records, for products that came from the legacy monolith (`legacy_synced`, read in the row the
 * writer changed; a `legacy_sync` row exists), the version of a change of one part published for
 * legacy's reverse sync, in the transaction that publishes it: a legacy capture that had not seen
 * it is concurrent with it (adapters/db/legacy-sync.ts). Catalogue writes (name, price) and the
 * legacy apply use it; this side's stock writes use collectHeldBack, which records the stock mark
 * in the same statement. The mesh's own products cost no statement. The writer holds the product rows already (the legacy apply sets the flag under the
 * same row lock, so a writer's row shows it); the legacy apply takes the product before this row
 * too, so the two cannot deadlock.
 */
export async function markPublished(
  tx: AnyTransaction,
  part: "name" | "stock",
  changed: readonly { id: string; version: number; legacySynced: boolean }[],
): Promise<void> {
  const rows = changed.filter((r) => r.legacySynced);
  if (rows.length === 0) return;
  const column = sql.raw(part === "name" ? "mesh_name_version" : "mesh_stock_version");
  await tx.execute(
    sql`update legacy_sync l set ${column} = greatest(l.${column}, r.version)
        from unnest(${sql.param(rows.map((r) => r.id))}::uuid[],
                    ${sql.param(rows.map((r) => String(r.version)))}::bigint[]) as r(id, version)
        where l.product_id = r.id`,
  );
}

/**
 * After a stock write of this side, for products that came from legacy (`legacy_synced`, read in
 * the row the writer changed; the mesh's own products cost no statement): records the version
 * published for legacy's reverse sync (markPublished's stock mark) and takes out of units on hand
 * what legacy sold while reservations held the units (`legacy_held_back`), as far as units are
 * free now (never below `reserved` or 0; `received` follows, keeping conservation). One
 * statement. The rows are updated in place to the counts their StockChanged reports (so is what
 * the writer answers, `received` too when the row carries it); returns what is still held back
 * per product (absent: none).
 */
export async function collectHeldBack(
  tx: AnyTransaction,
  changed: readonly StockRow[],
): Promise<Map<string, number>> {
  const rows = changed.filter((r) => r.legacySynced);
  const held = new Map<string, number>();
  if (rows.length === 0) return held;
  const result = await queryRows<{ product_id: string; taken: string | number; held_back: string | number }>(
    tx,
    sql`with c as (
          select l.product_id, r.version, l.legacy_held_back as held,
                 greatest(least(l.legacy_held_back, p.on_hand - p.reserved, p.on_hand), 0) as taken
          from unnest(${sql.param(rows.map((r) => r.id))}::uuid[],
                      ${sql.param(rows.map((r) => String(r.version)))}::bigint[]) as r(id, version)
          join legacy_sync l on l.product_id = r.id
          join products p on p.id = r.id
        ), marked as (
          update legacy_sync l set mesh_stock_version = greatest(l.mesh_stock_version, c.version),
                                   legacy_held_back = c.held - c.taken
          from c where l.product_id = c.product_id
        ), collected as (
          update products p set on_hand = p.on_hand - c.taken, received = p.received - c.taken
          from c where p.id = c.product_id and c.taken > 0
        )
        select product_id, taken, held - taken as held_back from c`,
  );
  for (const r of result) {
    // A writer returning the whole product row (adjustStock) gets its `received` moved too.
    const row = rows.find((x) => x.id === r.product_id) as (StockRow & { received?: number }) | undefined;
    if (row) row.onHand -= Number(r.taken);
    if (row?.received !== undefined) row.received -= Number(r.taken);
    if (Number(r.held_back) > 0) held.set(r.product_id, Number(r.held_back));
  }
  return held;
}

/** Why a conditional stock update touched no row: the product is missing, or short of units. */
export async function explainShortfall(db: Queryable, productId: string, requested: number): Promise<never> {
  const [p] = await db
    .select({ onHand: products.onHand, reserved: products.reserved })
    .from(products)
    .where(eq(products.id, productId));
  if (!p) throw new ProductNotFoundError(productId);
  throw new InsufficientStockError(productId, requested, p.onHand - p.reserved);
}
