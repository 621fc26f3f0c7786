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
}

export const stockColumns = {
  id: products.id,
  onHand: products.onHand,
  reserved: products.reserved,
  version: products.version,
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
  return { db, namespace, stockChanged, committed };
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
