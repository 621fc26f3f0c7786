import type { Reservation } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

/** Takes a held reservation's units out of stock for good; committing twice changes nothing. */
export function commitReservation(
  deps: { store: InventoryRepository },
  reservationId: string,
): Promise<Reservation> {
  return deps.store.commit(reservationId);
}
