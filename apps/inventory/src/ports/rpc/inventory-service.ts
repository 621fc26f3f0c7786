import type { ServiceImpl } from "@connectrpc/connect";
import type { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import type { Logger } from "@meshwork/telemetry";
import type { InventoryRepository } from "../../domain/ports.js";
import { createProductHandlers, type ProductCache } from "./product-handlers.js";
import { createReservationHandlers } from "./reservation-handlers.js";

export type { ProductCache } from "./product-handlers.js";

/**
 * Translates between the proto messages and the use cases: the product RPCs in
 * `product-handlers.ts`, the reservation RPCs in `reservation-handlers.ts`, the messages in
 * `messages.ts` and the one mapping of domain errors to status codes in `errors.ts`.
 */
export function createInventoryServiceHandlers(
  store: () => InventoryRepository,
  logger: Logger,
  cache: () => ProductCache,
): ServiceImpl<typeof InventoryService> {
  return { ...createProductHandlers(store, logger, cache), ...createReservationHandlers(store) };
}
