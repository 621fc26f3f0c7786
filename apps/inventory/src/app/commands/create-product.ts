import { v7 as uuidv7 } from "uuid";
import type { Product } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

export interface CreateProductInput {
  sku: string;
  name: string;
  priceMinor: number;
  currency: string;
  initialStock: number;
}

/** Adds a product to the catalogue with its initial stock; a taken sku is SkuTakenError. */
export function createProduct(
  deps: { store: InventoryRepository },
  input: CreateProductInput,
): Promise<Product> {
  return deps.store.createProduct({
    id: uuidv7(),
    sku: input.sku,
    name: input.name.trim(),
    priceMinor: input.priceMinor,
    currency: input.currency,
    onHand: input.initialStock,
  });
}
