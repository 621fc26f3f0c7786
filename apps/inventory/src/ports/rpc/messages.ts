import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MoneySchema } from "@meshwork/contracts/meshwork/common/v1/money";
import {
  type Product as ProductMessage,
  ProductSchema,
  type Reservation as ReservationMessage,
  ReservationSchema,
  ReservationState,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import type { Product, Reservation } from "../../domain/inventory.js";

const STATES = {
  held: ReservationState.HELD,
  committed: ReservationState.COMMITTED,
  released: ReservationState.RELEASED,
} as const;

export function toProduct(p: Product): ProductMessage {
  return create(ProductSchema, {
    id: p.id,
    sku: p.sku,
    name: p.name,
    price: create(MoneySchema, { amountMinor: BigInt(p.priceMinor), currency: p.currency }),
    onHand: BigInt(p.onHand),
    reserved: BigInt(p.reserved),
    available: BigInt(p.onHand - p.reserved),
    createTime: timestampFromDate(p.createdAt),
    version: BigInt(p.version),
  });
}

export function toReservation(r: Reservation): ReservationMessage {
  return create(ReservationSchema, {
    id: r.id,
    state: STATES[r.state],
    items: r.items.map((i) => ({ productId: i.productId, quantity: BigInt(i.quantity) })),
    createTime: timestampFromDate(r.createdAt),
  });
}

/** Quantities travel as int64; the service keeps them as safe JS numbers (validated ranges). */
export const n = (v: bigint) => Number(v);
