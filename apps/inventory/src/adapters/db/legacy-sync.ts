import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ProductUpdatedSchema, StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import type { ProductChanged } from "@meshwork/contracts/meshwork/legacy/v1/events";
import type { AnyTransaction } from "@meshwork/db";
import { createEnvelope, type EventEnvelope, enqueueEvents } from "@meshwork/events";
import { eq, sql } from "drizzle-orm";
import { legacySync, outbox, products } from "./schema.js";
import { EVENT_SOURCE, markPublished } from "./store-context.js";

/**
 * The `ce-source` of the events inventory writes when it applies a legacy change: the origin
 * marker the legacy side's reverse sync reads to leave them alone (they came from legacy).
 */
export const LEGACY_SYNC_SOURCE = "meshwork/inventory/legacy-sync";

/** What applying one captured legacy change did. */
export type LegacyApplyOutcome = "created" | "updated" | "unchanged" | "stale";

type ProductRow = typeof products.$inferSelect;
export type SyncMark = typeof legacySync.$inferSelect;
type LegacyState = Pick<ProductRow, "sku" | "name" | "priceMinor" | "currency" | "onHand">;

/**
 * Records `e.sequence` for its product unless a newer or equal one is recorded, and returns the
 * marks as they were before (defaults for a product seen the first time); undefined = stale.
 */
async function claimSequence(tx: AnyTransaction, e: ProductChanged): Promise<SyncMark | undefined> {
  const [before] = await tx
    .select()
    .from(legacySync)
    .where(eq(legacySync.productId, e.productId))
    .for("update");
  const claimed = await tx
    .insert(legacySync)
    .values({ productId: e.productId, sequence: Number(e.sequence) })
    .onConflictDoUpdate({
      target: legacySync.productId,
      set: { sequence: Number(e.sequence), appliedAt: sql`now()` },
      setWhere: sql`${legacySync.sequence} < ${Number(e.sequence)}`,
    })
    .returning();
  if (claimed.length === 0) return undefined;
  return before ?? { ...claimed[0]!, meshNameVersion: 0, meshStockVersion: 0, legacyStockDelta: null };
}

function stateOf(e: ProductChanged): LegacyState {
  return {
    sku: e.sku,
    name: e.name,
    priceMinor: Number(e.price?.amountMinor ?? 0n),
    currency: e.price?.currency ?? "",
    onHand: Number(e.onHand),
  };
}

/** Where the capture's change lands, and whether legacy must be sent the result back. */
export interface Merged {
  state: LegacyState;
  /** The count differs from what legacy will hold once it applied every mesh write published. */
  stockBack: boolean;
  /**
   * The part of legacy's running sum now counted in this side's units (the baseline of the next
   * capture): the capture's sum, less what the reservations' floor held back; null: none yet.
   */
  legacyStockDelta: number | null;
}

/**
 * The state a capture leaves on an existing product.
 *
 * Stock keeps one invariant, whatever order captures arrive in (late, twice, a later one before an
 * earlier one, whose lower sequence then drops it): **units on hand = the count the product
 * started from + every change of this side's own + the part of legacy's running sum recorded as
 * counted (`legacy_stock_delta`)**, so each legacy change is counted once. A capture carrying
 * `legacy_stock_delta` adds what that sum grew since the recorded part, and its own on-hand count
 * is never taken: it may have lost a legacy change that an earlier capture saw (the reverse sync
 * wrote this side's count over it in legacy between the two), and when that earlier capture comes
 * late it is stale. The sum is cumulative, so the newest capture carries every older change, and
 * any set of captures ends where their newest leaves it. Units never drop below what reservations
 * hold (legacy sold what the mesh had reserved): the count stops there, the part not counted stays
 * out of the recorded sum, and the next capture adds it when the units are free.
 *
 * The result goes back to legacy unless legacy will hold it anyway: a capture that had seen this
 * side's last stock write (`seen_stock_version` not below the last published) leaves legacy at
 * its own count; a concurrent one leaves it at this side's count before the capture (the pending
 * write overwrites legacy's). For name and price a concurrent capture loses to this side's write
 * (legacy gets it by the reverse sync); one that had seen it is taken whole.
 *
 * A capture from before these fields (no sum) is taken whole, and so is the first one carrying a
 * sum when none was recorded yet (no baseline: legacy's sum may hold changes already taken whole);
 * its sum becomes the baseline.
 */
export function mergeCapture(e: ProductChanged, row: ProductRow, mark: SyncMark): Merged {
  const state = stateOf(e);
  const delta = e.legacyStockDelta === undefined ? undefined : Number(e.legacyStockDelta);
  const concurrent = (seen: bigint | undefined, published: number) =>
    seen !== undefined && Number(seen) < published;
  const stockConcurrent = concurrent(e.seenStockVersion, mark.meshStockVersion);
  const merged = { ...state };
  if (concurrent(e.seenNameVersion, mark.meshNameVersion))
    Object.assign(merged, { name: row.name, priceMinor: row.priceMinor, currency: row.currency });
  const baseline = mark.legacyStockDelta;
  const counted = delta !== undefined && baseline !== null;
  if (counted) merged.onHand = row.onHand + (delta - baseline);
  merged.onHand = Math.max(merged.onHand, row.reserved, 0);
  const legacyWillHold = stockConcurrent ? row.onHand : state.onHand;
  return {
    state: merged,
    stockBack: merged.onHand !== legacyWillHold,
    legacyStockDelta: counted ? baseline + (merged.onHand - row.onHand) : (delta ?? baseline),
  };
}

/** The events a change writes: ProductUpdated if the catalogue fields moved, StockChanged if stock did. */
function changeEvents(after: ProductRow, changed: LegacyChanges, namespace: string): EventEnvelope[] {
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
  // A merged count legacy does not hold goes out as the mesh's own (legacy's reverse sync applies it).
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
        changed.stockBack ? { source: EVENT_SOURCE, namespace } : options,
      ),
    );
  return events;
}

/** What a merged capture changes on a row: each part that moved gets its event. */
export interface LegacyChanges {
  name: boolean;
  stock: boolean;
  /** The stock event goes to legacy (this side's origin, recorded by markPublished). */
  stockBack: boolean;
}

/** The parts a merged capture changes on `row` (none: no version, no event). */
export function legacyChanges(row: ProductRow, merged: Merged): LegacyChanges {
  const { state } = merged;
  return {
    name:
      row.sku !== state.sku ||
      row.name !== state.name ||
      row.priceMinor !== state.priceMinor ||
      row.currency !== state.currency,
    // A count legacy will not hold goes back even when this side's is unchanged.
    stock: row.onHand !== state.onHand || merged.stockBack,
    stockBack: merged.stockBack,
  };
}

/** Applies a merged capture to an existing product row; undefined when it changes nothing. */
async function updateFromLegacy(
  tx: AnyTransaction,
  row: ProductRow,
  merged: Merged,
  namespace: string,
): Promise<ProductRow | undefined> {
  const { state } = merged;
  const changed = legacyChanges(row, merged);
  if (!changed.name && !changed.stock) return undefined;
  const [after] = await tx
    .update(products)
    .set({
      ...state,
      received: sql`${products.received} + ${state.onHand - row.onHand}`,
      version: sql`${products.version} + 1`,
      legacySynced: true,
    })
    .where(eq(products.id, row.id))
    .returning();
  if (!after) throw new Error(`product ${row.id} vanished while applying a legacy change`);
  if (changed.stock && changed.stockBack) await markPublished(tx, "stock", [after]);
  await enqueueEvents(tx, outbox, changeEvents(after, changed, namespace));
  return after;
}

/**
 * Applies a product's state captured in the legacy database, in the consumer's transaction.
 * Idempotent and order-proof: the capture `sequence` is recorded per product and an event not
 * newer than the recorded one is dropped (`stale`); a state equal to the row's changes nothing
 * (no version, no event: a second backfill is a no-op). A capture is merged rather than taken
 * whole (`mergeCapture`): stock by legacy's running sum, so the newest capture counts every older
 * one's change and dropping those loses no sale; name and price by whether it had seen this
 * side's last write. A change bumps the version and
 * writes ProductUpdated / StockChanged, with the origin marker unless legacy must get the result
 * back, so caches drop the old copy. `received` moves with units on hand, keeping the
 * conservation check true. The product's row is locked before its `legacy_sync` row, the order
 * of this side's own writers (markPublished).
 */
export async function applyLegacyProduct(
  tx: AnyTransaction,
  e: ProductChanged,
  namespace: string,
): Promise<LegacyApplyOutcome> {
  const [row] = await tx.select().from(products).where(eq(products.id, e.productId)).for("update");
  const mark = await claimSequence(tx, e);
  if (!mark) return "stale";
  const delta = e.legacyStockDelta === undefined ? null : Number(e.legacyStockDelta);
  if (!row) {
    const state = stateOf(e);
    const [created] = await tx
      .insert(products)
      .values({ id: e.productId, ...state, received: state.onHand, legacySynced: true })
      .returning();
    if (!created) throw new Error(`product ${e.productId}: insert returned no row`);
    await setLegacyDelta(tx, e.productId, delta);
    const all = { name: true, stock: true, stockBack: false };
    await enqueueEvents(tx, outbox, changeEvents(created, all, namespace));
    return "created";
  }
  const merged = mergeCapture(e, row, mark);
  await setLegacyDelta(tx, e.productId, merged.legacyStockDelta);
  if (await updateFromLegacy(tx, row, merged, namespace)) return "updated";
  if (!row.legacySynced) await tx.update(products).set({ legacySynced: true }).where(eq(products.id, row.id));
  return "unchanged";
}

async function setLegacyDelta(tx: AnyTransaction, productId: string, delta: number | null): Promise<void> {
  await tx.update(legacySync).set({ legacyStockDelta: delta }).where(eq(legacySync.productId, productId));
}
