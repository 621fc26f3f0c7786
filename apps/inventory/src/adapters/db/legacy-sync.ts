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
  return (
    before ?? {
      ...claimed[0]!,
      meshNameVersion: 0,
      meshStockVersion: 0,
      legacyStockDelta: null,
      legacyHeldBack: 0,
    }
  );
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
  /** Legacy's count differs from what it will hold once it applied every mesh write published. */
  stockBack: boolean;
  /** Legacy's running sum the capture carried (the baseline of the next); null: none yet. */
  legacyStockDelta: number | null;
  /** Units legacy sold that the reservations' floor keeps in `state.onHand` (legacy_held_back). */
  heldBack: number;
}

/**
 * The state a capture leaves on an existing product.
 *
 * Stock keeps one invariant, whatever order captures arrive in (late, twice, a later one before an
 * earlier one, whose lower sequence then drops it): **units on hand - held back = the count the
 * product started from + every change of this side's own + legacy's running sum last applied**,
 * so each legacy change is counted once. A capture carrying `legacy_stock_delta` adds what that
 * sum grew since the last one, and its own on-hand count is not taken: it may have lost a legacy
 * change that an earlier capture saw (the reverse sync wrote this side's count over it in legacy
 * between the two), and when that earlier capture comes late it is stale. The sum is cumulative,
 * so the newest capture carries every older change.
 *
 * Units never drop below what reservations hold (legacy sold what the mesh had reserved): the
 * count stops there and the rest is recorded as held back (`heldBack`). Legacy keeps its lower
 * count (nothing is sent back for the floor: sent, legacy would sell those units again); this
 * side's stock writes take the held-back units out as they free up (`collectHeldBack`), and every
 * StockChanged carries what is left, which legacy's reverse sync leaves out of its count.
 *
 * The count goes back to legacy unless legacy will hold it anyway: a capture that had seen this
 * side's last stock write (`seen_stock_version` not below the last published) leaves legacy at
 * its own count; a concurrent one leaves it at this side's count before the capture (the pending
 * write overwrites legacy's). For name and price a concurrent capture loses to this side's write
 * (legacy gets it by the reverse sync); one that had seen it is taken whole.
 *
 * Taken whole (legacy's count is the truth, a new baseline): a capture from before these fields
 * (no sum); the first one carrying a sum when none was recorded yet (legacy's sum may hold changes
 * already taken whole); and a backfill snapshot that had seen this side's last stock write and
 * carries no change not counted yet (it repairs a change legacy's trigger missed, keeping the
 * oversold units legacy's count, stopped at 0, cannot show; otherwise it is merged like any
 * capture, and the next backfill repairs).
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
  const rebaseline = e.snapshot && !stockConcurrent && delta === baseline;
  // Oversold units legacy's own count cannot show (its reverse sync stops at 0): a re-baseline
  // keeps them, so they still come out of the next restock.
  const hidden = Math.max(mark.legacyHeldBack - row.onHand, 0);
  // The count every change adds up to (below 0 or the reserved units when legacy oversold).
  const counted =
    delta === undefined || baseline === null
      ? state.onHand
      : rebaseline
        ? state.onHand - hidden
        : row.onHand - mark.legacyHeldBack + (delta - baseline);
  merged.onHand = Math.max(counted, row.reserved, 0);
  const legacyWillHold = stockConcurrent ? Math.max(row.onHand - mark.legacyHeldBack, 0) : state.onHand;
  return {
    state: merged,
    stockBack: Math.max(counted, 0) !== legacyWillHold,
    legacyStockDelta: delta ?? baseline,
    heldBack: merged.onHand - counted,
  };
}

/** The events a change writes: ProductUpdated if the catalogue fields moved, StockChanged if stock did. */
function changeEvents(
  after: ProductRow,
  changed: LegacyChanges,
  heldBack: number,
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
          heldBack: BigInt(heldBack),
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
  await enqueueEvents(tx, outbox, changeEvents(after, changed, merged.heldBack, namespace));
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
 * of this side's own writers (collectHeldBack, markPublished).
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
    await setLegacyStock(tx, e.productId, delta, 0);
    const all = { name: true, stock: true, stockBack: false };
    await enqueueEvents(tx, outbox, changeEvents(created, all, 0, namespace));
    return "created";
  }
  const merged = mergeCapture(e, row, mark);
  await setLegacyStock(tx, e.productId, merged.legacyStockDelta, merged.heldBack);
  if (await updateFromLegacy(tx, row, merged, namespace)) return "updated";
  if (!row.legacySynced) await tx.update(products).set({ legacySynced: true }).where(eq(products.id, row.id));
  return "unchanged";
}

async function setLegacyStock(
  tx: AnyTransaction,
  productId: string,
  delta: number | null,
  heldBack: number,
): Promise<void> {
  await tx
    .update(legacySync)
    .set({ legacyStockDelta: delta, legacyHeldBack: heldBack })
    .where(eq(legacySync.productId, productId));
}
