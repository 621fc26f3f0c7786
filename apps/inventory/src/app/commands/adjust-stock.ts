import type { Logger } from "@meshwork/telemetry";
import type { Product } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

export interface AdjustStockInput {
  productId: string;
  /** Units received (positive) or written off (negative). */
  delta: number;
  /** Why, for the log. */
  reason: string;
}

/** Changes a product's units on hand and logs why. */
export async function adjustStock(
  deps: { store: InventoryRepository; logger: Pick<Logger, "info"> },
  input: AdjustStockInput,
): Promise<Product> {
  const product = await deps.store.adjustStock(input.productId, input.delta);
  deps.logger.info(
    { product_id: input.productId, delta: input.delta, reason: input.reason },
    "stock adjusted",
  );
  return product;
}
