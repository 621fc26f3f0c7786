import type { Reservation } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

/** Gives a held reservation's units back; releasing a released one changes nothing. */
export function releaseReservation(
  deps: { store: InventoryRepository },
  reservationId: string,
): Promise<Reservation> {
  return deps.store.release(reservationId);
}
