import type { Product } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

export function getProduct(deps: { store: InventoryRepository }, id: string): Promise<Product> {
  return deps.store.getProduct(id);
}
