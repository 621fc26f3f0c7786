import { asc, eq, gt, sql } from "drizzle-orm";
import {
  type Product,
  ProductNotFoundError,
  type ProductRef,
  type ReservationState,
  type StockAudit,
} from "../../domain/inventory.js";
import { products, reservationItems, reservations } from "./schema.js";
import type { StoreContext } from "./store-context.js";

/** The store's reads of products: one, many, their refs page by page, and the stock audit. */
export function createProductReads({ db }: StoreContext) {
  return {
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
