import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { MoneySchema } from "@meshwork/contracts/meshwork/common/v1/money";
import {
  type InventoryService,
  type Product as ProductMessage,
  ProductSchema,
  type Reservation as ReservationMessage,
  ReservationSchema,
  ReservationState,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { InvalidPageTokenError, keysetTokens, pageSize } from "@meshwork/db";
import { mapErrors } from "@meshwork/runtime";
import type { Logger } from "@meshwork/telemetry";
import { v7 as uuidv7 } from "uuid";
import type { InventoryStore } from "../../adapters/db/inventory-store.js";
import {
  DuplicateItemError,
  InsufficientStockError,
  type Product,
  ProductNotFoundError,
  type Reservation,
  ReservationConflictError,
  ReservationNotFoundError,
  ReservationStateError,
  SkuTakenError,
} from "../../domain/inventory.js";

const STATES = {
  held: ReservationState.HELD,
  committed: ReservationState.COMMITTED,
  released: ReservationState.RELEASED,
} as const;

function toProduct(p: Product): ProductMessage {
  return create(ProductSchema, {
    id: p.id,
    sku: p.sku,
    name: p.name,
    price: create(MoneySchema, { amountMinor: BigInt(p.priceMinor), currency: p.currency }),
    onHand: BigInt(p.onHand),
    reserved: BigInt(p.reserved),
    available: BigInt(p.onHand - p.reserved),
    createTime: timestampFromDate(p.createdAt),
  });
}

function toReservation(r: Reservation): ReservationMessage {
  return create(ReservationSchema, {
    id: r.id,
    state: STATES[r.state],
    items: r.items.map((i) => ({ productId: i.productId, quantity: BigInt(i.quantity) })),
    createTime: timestampFromDate(r.createdAt),
  });
}

/** The one place where the service's domain errors become status codes. */
function toConnectError(err: unknown): unknown {
  if (err instanceof ProductNotFoundError || err instanceof ReservationNotFoundError)
    return new ConnectError(err.message, Code.NotFound);
  if (err instanceof SkuTakenError || err instanceof ReservationConflictError)
    return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof InsufficientStockError || err instanceof ReservationStateError)
    return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof InvalidPageTokenError || err instanceof DuplicateItemError)
    return new ConnectError(err.message, Code.InvalidArgument);
  return err;
}

const mapped = mapErrors(toConnectError);

/** Quantities travel as int64; the service keeps them as safe JS numbers (validated ranges). */
const n = (v: bigint) => Number(v);
const pages = keysetTokens("p1:", "ListProducts");

/** Translates between the proto messages and the store. */
export function createInventoryServiceHandlers(
  store: () => InventoryStore,
  logger: Logger,
): ServiceImpl<typeof InventoryService> {
  return {
    createProduct: (req) =>
      mapped(async () => {
        if (!req.price || !Number.isSafeInteger(n(req.price.amountMinor)))
          throw new ConnectError("price.amount_minor: out of range", Code.InvalidArgument);
        const product = await store().createProduct({
          id: uuidv7(),
          sku: req.sku,
          name: req.name.trim(),
          priceMinor: n(req.price.amountMinor),
          currency: req.price.currency,
          onHand: n(req.initialStock),
        });
        return { product: toProduct(product) };
      }),
    getProduct: (req) => mapped(async () => ({ product: toProduct(await store().getProduct(req.id)) })),
    listProducts: (req) =>
      mapped(async () => {
        const size = pageSize(req.pageSize);
        const rows = await store().listProductsAfter(
          req.pageToken ? pages.decode(req.pageToken) : undefined,
          size + 1,
        );
        const { items, nextPageToken } = pages.page(rows, size);
        return { products: items.map(toProduct), nextPageToken };
      }),
    adjustStock: (req) =>
      mapped(async () => {
        const product = await store().adjustStock(req.productId, n(req.delta));
        logger.info({ product_id: req.productId, delta: n(req.delta), reason: req.reason }, "stock adjusted");
        return { product: toProduct(product) };
      }),
    reserveStock: (req) =>
      mapped(async () => {
        const items = req.items.map((i) => ({ productId: i.productId, quantity: n(i.quantity) }));
        return { reservation: toReservation(await store().reserve(req.reservationId, items)) };
      }),
    releaseReservation: (req) =>
      mapped(async () => ({ reservation: toReservation(await store().release(req.reservationId)) })),
    getReservation: (req) =>
      mapped(async () => ({ reservation: toReservation(await store().getReservation(req.reservationId)) })),
    auditStock: async () => ({
      products: (await store().audit()).map((a) => ({
        productId: a.productId,
        onHand: BigInt(a.onHand),
        reserved: BigInt(a.reserved),
        received: BigInt(a.received),
        committed: BigInt(a.committed),
        held: BigInt(a.held),
      })),
    }),
    commitReservation: (req) =>
      mapped(async () => ({ reservation: toReservation(await store().commit(req.reservationId)) })),
  };
}
