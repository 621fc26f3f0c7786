import { NothingToUpdateError, type Product, type ProductChanges } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

export interface UpdateProductInput {
  id: string;
  name?: string;
  price?: { amountMinor: number; currency: string };
}

/**
 * Changes a product's name and/or price. The product's version grows and ProductUpdated is
 * published with the change, so every cache of the product drops it.
 */
export function updateProduct(
  deps: { store: InventoryRepository },
  input: UpdateProductInput,
): Promise<Product> {
  const changes: ProductChanges = {};
  if (input.name !== undefined) changes.name = input.name.trim();
  if (input.price) {
    changes.priceMinor = input.price.amountMinor;
    changes.currency = input.price.currency;
  }
  if (Object.keys(changes).length === 0) throw new NothingToUpdateError();
  return deps.store.updateProduct(input.id, changes);
}
