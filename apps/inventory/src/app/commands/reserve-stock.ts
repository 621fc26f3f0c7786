import type { Reservation, ReservationItem } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

/**
 * Holds every item or none (InsufficientStockError names the first that is short). Idempotent
 * by reservation id: a repeat with the same items returns the reservation, with other items it
 * is ReservationConflictError.
 */
export function reserveStock(
  deps: { store: InventoryRepository },
  input: { reservationId: string; items: readonly ReservationItem[] },
): Promise<Reservation> {
  return deps.store.reserve(input.reservationId, input.items);
}
