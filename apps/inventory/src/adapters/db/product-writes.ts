import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ProductUpdatedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import { isUniqueViolation } from "@meshwork/db";
import { createEnvelope, enqueueEvents } from "@meshwork/events";
import { and, eq, sql } from "drizzle-orm";
import {
  MAX_UNITS,
  type NewProduct,
  type Product,
  type ProductChanges,
  ProductNotFoundError,
  SkuTakenError,
  StockOutOfRangeError,
} from "../../domain/inventory.js";
import { outbox, products } from "./schema.js";
import {
  EVENT_SOURCE,
  explainShortfall,
  markPublished,
  nextVersion,
  type StoreContext,
} from "./store-context.js";

/** The store's changes of products: create, rename or reprice, and stock adjustments. */
export function createProductWrites({ db, namespace, stockChanged, committed }: StoreContext) {
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

    /** Changes name and/or price; ProductUpdated goes out with the change. */
    async updateProduct(id: string, changes: ProductChanges): Promise<Product> {
      const row = await db.transaction(async (tx) => {
        const [updated] = await tx
          .update(products)
          .set({ ...changes, ...nextVersion })
          .where(eq(products.id, id))
          .returning();
        if (!updated) throw new ProductNotFoundError(id);
        await markPublished(tx, "name", [updated]);
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
  };
}
