import type { ServiceImpl } from "@connectrpc/connect";
import type { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { commitReservation } from "../../app/commands/commit-reservation.js";
import { releaseReservation } from "../../app/commands/release-reservation.js";
import { reserveStock } from "../../app/commands/reserve-stock.js";
import { auditStock } from "../../app/queries/audit-stock.js";
import { getReservation } from "../../app/queries/get-reservation.js";
import type { InventoryRepository } from "../../domain/ports.js";
import { mapped } from "./errors.js";
import { n, toReservation } from "./messages.js";

type ReservationHandlers = Pick<
  ServiceImpl<typeof InventoryService>,
  "reserveStock" | "releaseReservation" | "getReservation" | "commitReservation" | "auditStock"
>;

/** The reservation RPCs (reserve, release, get, commit) and the stock audit. */
export function createReservationHandlers(store: () => InventoryRepository): ReservationHandlers {
  return {
    reserveStock: (req) =>
      mapped(async () => {
        const items = req.items.map((i) => ({ productId: i.productId, quantity: n(i.quantity) }));
        const reservation = await reserveStock(
          { store: store() },
          { reservationId: req.reservationId, items },
        );
        return { reservation: toReservation(reservation) };
      }),
    releaseReservation: (req) =>
      mapped(async () => ({
        reservation: toReservation(await releaseReservation({ store: store() }, req.reservationId)),
      })),
    getReservation: (req) =>
      mapped(async () => ({
        reservation: toReservation(await getReservation({ store: store() }, req.reservationId)),
      })),
    auditStock: async () => ({
      products: (await auditStock({ store: store() })).map((a) => ({
        productId: a.productId,
        onHand: BigInt(a.onHand),
        reserved: BigInt(a.reserved),
        received: BigInt(a.received),
        committed: BigInt(a.committed),
        held: BigInt(a.held),
      })),
    }),
    commitReservation: (req) =>
      mapped(async () => ({
        reservation: toReservation(await commitReservation({ store: store() }, req.reservationId)),
      })),
  };
}
