import type { Reservation } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

export function getReservation(
  deps: { store: InventoryRepository },
  reservationId: string,
): Promise<Reservation> {
  return deps.store.getReservation(reservationId);
}
