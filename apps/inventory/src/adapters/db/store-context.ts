import { create } from "@bufbuild/protobuf";
import { StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import type { AnyTransaction, Database, Queryable } from "@meshwork/db";
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
    await markPublished(tx, "stock", rows);
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
 * it is concurrent with it (adapters/db/legacy-sync.ts). The mesh's own products cost no
 * statement. The writer holds the product rows already (the legacy apply sets the flag under the
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

/** Why a conditional stock update touched no row: the product is missing, or short of units. */
export async function explainShortfall(db: Queryable, productId: string, requested: number): Promise<never> {
  const [p] = await db
    .select({ onHand: products.onHand, reserved: products.reserved })
    .from(products)
    .where(eq(products.id, productId));
  if (!p) throw new ProductNotFoundError(productId);
  throw new InsufficientStockError(productId, requested, p.onHand - p.reserved);
}
