import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Cache } from "@meshwork/cache";
import { MoneySchema } from "@meshwork/contracts/meshwork/common/v1/money";
import {
  type InventoryService,
  type Product as ProductMessage,
  ProductSchema,
  type Reservation as ReservationMessage,
  ReservationSchema,
  ReservationState,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { InvalidPageTokenError } from "@meshwork/db";
import { mapErrors } from "@meshwork/runtime";
import type { Logger } from "@meshwork/telemetry";
import { adjustStock } from "../../app/commands/adjust-stock.js";
import { commitReservation } from "../../app/commands/commit-reservation.js";
import { createProduct } from "../../app/commands/create-product.js";
import { releaseReservation } from "../../app/commands/release-reservation.js";
import { reserveStock } from "../../app/commands/reserve-stock.js";
import { updateProduct } from "../../app/commands/update-product.js";
import { auditStock } from "../../app/queries/audit-stock.js";
import { getProduct } from "../../app/queries/get-product.js";
import { getReservation } from "../../app/queries/get-reservation.js";
import { listProducts } from "../../app/queries/list-products.js";
import {
  DuplicateItemError,
  InsufficientStockError,
  NothingToUpdateError,
  type Product,
  ProductNotFoundError,
  type Reservation,
  ReservationConflictError,
  ReservationNotFoundError,
  ReservationStateError,
  SkuTakenError,
  StockOutOfRangeError,
} from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

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
    version: BigInt(p.version),
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
  if (
    err instanceof InvalidPageTokenError ||
    err instanceof DuplicateItemError ||
    err instanceof StockOutOfRangeError ||
    err instanceof NothingToUpdateError
  )
    return new ConnectError(err.message, Code.InvalidArgument);
  return err;
}

const mapped = mapErrors(toConnectError);

/** Quantities travel as int64; the service keeps them as safe JS numbers (validated ranges). */
const n = (v: bigint) => Number(v);

/** The product read path's cache: products by id, as the contract's message. */
export type ProductCache = Cache<ProductMessage>;

/** Translates between the proto messages and the use cases. */
export function createInventoryServiceHandlers(
  store: () => InventoryRepository,
  logger: Logger,
  cache: () => ProductCache,
): ServiceImpl<typeof InventoryService> {
  /** A product through the cache; undefined when the store has none. */
  const cachedProduct = (id: string) =>
    cache().get(id, async () => {
      try {
        return toProduct(await getProduct({ store: store() }, id));
      } catch (err) {
        if (err instanceof ProductNotFoundError) return undefined;
        throw err;
      }
    });
  return {
    createProduct: (req) =>
      mapped(async () => {
        if (!req.price || !Number.isSafeInteger(n(req.price.amountMinor)))
          throw new ConnectError("price.amount_minor: out of range", Code.InvalidArgument);
        const product = await createProduct(
          { store: store() },
          {
            sku: req.sku,
            name: req.name,
            priceMinor: n(req.price.amountMinor),
            currency: req.price.currency,
            initialStock: n(req.initialStock),
          },
        );
        return { product: toProduct(product) };
      }),
    getProduct: (req) =>
      mapped(async () => {
        const product = await cachedProduct(req.id);
        if (!product) throw new ProductNotFoundError(req.id);
        return { product };
      }),
    listProducts: (req) =>
      mapped(async () => {
        // The page's ids and versions come from the store; the products themselves from L1 when
        // it holds them at that version, the rest in one query (which refills the cache).
        const page = await listProducts(
          { store: store() },
          { pageSize: req.pageSize, pageToken: req.pageToken },
        );
        const missing = page.products.filter((p) => !cache().getLocal(p.id, p.version)).map((p) => p.id);
        const loaded = new Map<string, ProductMessage>();
        for (const p of missing.length > 0 ? await store().getProducts(missing) : []) {
          const message = toProduct(p);
          cache().put(p.id, message);
          loaded.set(p.id, message);
        }
        const products = page.products.flatMap((p) => {
          const m = loaded.get(p.id) ?? cache().getLocal(p.id, p.version);
          return m ? [m] : [];
        });
        return { products, nextPageToken: page.nextPageToken };
      }),
    updateProduct: (req) =>
      mapped(async () => {
        if (req.price && !Number.isSafeInteger(n(req.price.amountMinor)))
          throw new ConnectError("price.amount_minor: out of range", Code.InvalidArgument);
        const product = await updateProduct(
          { store: store() },
          {
            id: req.id,
            ...(req.name !== undefined ? { name: req.name } : {}),
            ...(req.price
              ? { price: { amountMinor: n(req.price.amountMinor), currency: req.price.currency } }
              : {}),
          },
        );
        return { product: toProduct(product) };
      }),
    adjustStock: (req) =>
      mapped(async () => {
        const product = await adjustStock(
          { store: store(), logger },
          { productId: req.productId, delta: n(req.delta), reason: req.reason },
        );
        return { product: toProduct(product) };
      }),
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
