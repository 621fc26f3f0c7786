import type { Database } from "@meshwork/db";
import { createProductReads } from "./product-reads.js";
import { createProductWrites } from "./product-writes.js";
import { createCommit } from "./reservation-commit.js";
import { createRelease } from "./reservation-release.js";
import { createReserve } from "./reservation-reserve.js";
import type { InventorySchema } from "./schema.js";
import { createStoreContext, type InventoryStoreOptions } from "./store-context.js";

export type { InventoryStoreOptions } from "./store-context.js";

/**
 * The inventory's state in Postgres. Every stock change is one conditional UPDATE (`... WHERE
 * on_hand - reserved >= n`), so concurrent reservations of the last units serialise on the row
 * and exactly the ones that fit succeed; the table's checks back that up.
 *
 * One file per concern: `product-reads.ts`, `product-writes.ts`, and a reservation's life in
 * `reservation-reserve.ts`, `reservation-release.ts` and `reservation-commit.ts`; what they
 * share (the StockChanged rows, the after-commit hook) is in `store-context.ts`.
 */
export function createInventoryStore(db: Database<InventorySchema>, options: InventoryStoreOptions) {
  const ctx = createStoreContext(db, options);
  return {
    ...createProductReads(ctx),
    ...createProductWrites(ctx),
    ...createReserve(ctx),
    ...createRelease(ctx),
    ...createCommit(ctx),
  };
}

export type InventoryStore = ReturnType<typeof createInventoryStore>;
