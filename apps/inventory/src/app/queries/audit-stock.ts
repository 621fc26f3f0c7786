import type { StockAudit } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

/** Every product's stock next to its history, for the consistency checker. */
export function auditStock(deps: { store: InventoryRepository }): Promise<StockAudit[]> {
  return deps.store.audit();
}
