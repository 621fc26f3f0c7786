import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ProductUpdatedSchema, StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import type { ProductChanged } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type AnyTransaction, claimSequence } from "@meshwork/db";
import { createEnvelope, type EventEnvelope, enqueueEvents } from "@meshwork/events";
import { eq, sql } from "drizzle-orm";
import { legacySync, outbox, products } from "./schema.js";

/**
 * The `ce-source` of the events inventory writes when it applies a legacy change: the origin
 * marker the legacy side's reverse sync reads to leave them alone (they came from legacy).
 */
export const LEGACY_SYNC_SOURCE = "meshwork/inventory/legacy-sync";

/** What applying one captured legacy change did. */
export type LegacyApplyOutcome = "created" | "updated" | "unchanged" | "stale";

type ProductRow = typeof products.$inferSelect;
type LegacyState = Pick<ProductRow, "sku" | "name" | "priceMinor" | "currency" | "onHand">;

function stateOf(e: ProductChanged): LegacyState {
  return {
    sku: e.sku,
    name: e.name,
    priceMinor: Number(e.price?.amountMinor ?? 0n),
    currency: e.price?.currency ?? "",
    onHand: Number(e.onHand),
  };
}

/** The events a change writes: ProductUpdated if the catalogue fields moved, StockChanged if stock did. */
function changeEvents(
  after: ProductRow,
  changed: { name: boolean; stock: boolean },
  namespace: string,
): EventEnvelope[] {
  const events: EventEnvelope[] = [];
  const options = { source: LEGACY_SYNC_SOURCE, namespace };
  if (changed.name)
    events.push(
      createEnvelope(
        ProductUpdatedSchema,
        create(ProductUpdatedSchema, {
          productId: after.id,
          version: BigInt(after.version),
          name: after.name,
          price: { amountMinor: BigInt(after.priceMinor), currency: after.currency },
          updateTime: timestampNow(),
        }),
        options,
      ),
    );
  if (changed.stock)
    events.push(
      createEnvelope(
        StockChangedSchema,
        create(StockChangedSchema, {
          productId: after.id,
          version: BigInt(after.version),
          onHand: BigInt(after.onHand),
          reserved: BigInt(after.reserved),
          available: BigInt(after.onHand - after.reserved),
        }),
        options,
      ),
    );
  return events;
}

/**
 * Applies a product's state captured in the legacy database, in the consumer's transaction.
 * Idempotent and order-proof: the capture `sequence` is recorded per product and an event not
 * newer than the recorded one is dropped (`stale`); a state equal to the row's changes nothing
 * (no version, no event: a second backfill is a no-op). A change bumps the version and writes
 * ProductUpdated / StockChanged with the origin marker, so caches drop the old copy. Units on
 * hand follow legacy; `received` moves by the same delta, keeping the conservation check true.
 */
export async function applyLegacyProduct(
  tx: AnyTransaction,
  e: ProductChanged,
  namespace: string,
): Promise<LegacyApplyOutcome> {
  if (!(await claimSequence(tx, legacySync, legacySync.productId, e.productId, Number(e.sequence))))
    return "stale";
  const state = stateOf(e);
  const [row] = await tx.select().from(products).where(eq(products.id, e.productId)).for("update");
  let after: ProductRow | undefined;
  const changed = { name: true, stock: true };
  if (!row) {
    [after] = await tx
      .insert(products)
      .values({ id: e.productId, ...state, received: state.onHand })
      .returning();
  } else {
    changed.name =
      row.sku !== state.sku ||
      row.name !== state.name ||
      row.priceMinor !== state.priceMinor ||
      row.currency !== state.currency;
    changed.stock = row.onHand !== state.onHand;
    if (!changed.name && !changed.stock) return "unchanged";
    [after] = await tx
      .update(products)
      .set({
        ...state,
        received: sql`${products.received} + ${state.onHand - row.onHand}`,
        version: sql`${products.version} + 1`,
      })
      .where(eq(products.id, e.productId))
      .returning();
  }
  if (!after) throw new Error(`product ${e.productId} vanished while applying a legacy change`);
  await enqueueEvents(tx, outbox, changeEvents(after, changed, namespace));
  return row ? "updated" : "created";
}
