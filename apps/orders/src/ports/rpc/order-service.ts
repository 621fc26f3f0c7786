import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type Order as OrderMessage,
  OrderSchema,
  type OrderService,
  OrderStatus,
} from "@meshwork/contracts/meshwork/orders/v1/orders";
import { InvalidPageTokenError } from "@meshwork/db";
import { mapErrors, callerOf as verifiedCaller } from "@meshwork/runtime";
import type { SagaQueries } from "@meshwork/saga";
import { cancelOrder } from "../../app/commands/cancel-order.js";
import { placeOrder } from "../../app/commands/place-order.js";
import { getOrder } from "../../app/queries/get-order.js";
import { getSaga } from "../../app/queries/get-saga.js";
import { listOrders } from "../../app/queries/list-orders.js";
import { listSagas } from "../../app/queries/list-sagas.js";
import { watchOrder } from "../../app/queries/watch-order.js";
import type { WatchLimit } from "../../app/watch-limit.js";
import {
  IdempotencyKeyReusedError,
  InvalidOrderError,
  type Order,
  OrderNotFoundError,
  OrderStateError,
  PermissionDeniedError,
  ProductNotFoundError,
  SagaNotFoundError,
  TooManyWatchesError,
} from "../../domain/order.js";
import type { OrderRepository, PriceList, StatusWatch } from "../../domain/ports.js";
import { stateOf, toSagaMessage, toSagaSummaryMessage } from "./saga-messages.js";

const STATUSES = {
  pending: OrderStatus.PENDING,
  stock_reserved: OrderStatus.STOCK_RESERVED,
  payment_authorized: OrderStatus.PAYMENT_AUTHORIZED,
  confirmed: OrderStatus.CONFIRMED,
  cancelled: OrderStatus.CANCELLED,
} as const;

export function toOrderMessage(o: Order): OrderMessage {
  return create(OrderSchema, {
    id: o.id,
    userId: o.userId,
    items: o.items.map((i) => ({
      productId: i.productId,
      quantity: BigInt(i.quantity),
      unitPrice: { amountMinor: BigInt(i.unitPriceMinor), currency: o.currency },
    })),
    total: { amountMinor: BigInt(o.totalMinor), currency: o.currency },
    status: STATUSES[o.status],
    cancelReason: o.cancelReason ?? "",
    createTime: timestampFromDate(o.createdAt),
    updateTime: timestampFromDate(o.updatedAt),
  });
}

/** The one place where the service's domain errors become status codes. */
function toConnectError(err: unknown): unknown {
  if (
    err instanceof OrderNotFoundError ||
    err instanceof ProductNotFoundError ||
    err instanceof SagaNotFoundError
  )
    return new ConnectError(err.message, Code.NotFound);
  if (err instanceof IdempotencyKeyReusedError) return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof OrderStateError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof PermissionDeniedError) return new ConnectError(err.message, Code.PermissionDenied);
  if (err instanceof TooManyWatchesError) return new ConnectError(err.message, Code.ResourceExhausted);
  if (err instanceof InvalidOrderError || err instanceof InvalidPageTokenError)
    return new ConnectError(err.message, Code.InvalidArgument);
  return err;
}

const mapped = mapErrors(toConnectError);

/**
 * The caller: the user the gateway verified, as the runtime read it from the gateway's signed
 * assertion (identity headers sent by anyone else are refused before any handler runs). A call
 * without one did not come through the gateway's authentication.
 */
export function callerOf(ctx: HandlerContext): string {
  const caller = verifiedCaller(ctx);
  if (caller?.kind !== "user") {
    throw new ConnectError(
      "no verified caller: call OrderService through the gateway with a token",
      Code.Unauthenticated,
    );
  }
  return caller.subject;
}

/** The caller's roles, as the gateway verified them. */
function rolesOf(ctx: HandlerContext): readonly string[] {
  return verifiedCaller(ctx)?.roles ?? [];
}

export interface OrderHandlerDeps {
  orders: () => OrderRepository;
  /** Product prices (inventory behind a cache). */
  catalogue: () => PriceList;
  /** Wakes the saga executor after a cancellation commits. */
  kick: () => void;
  watch: () => StatusWatch;
  /** WatchOrder streams per user. */
  watchLimit: WatchLimit;
  /** The placement sagas, read-only (ListSagas, GetSaga). */
  sagas: () => SagaQueries;
  /** The placement saga's step names, in order. */
  sagaSteps: () => readonly string[];
}

/** Translates between the proto messages and the use cases. */
export function createOrderServiceHandlers(deps: OrderHandlerDeps): ServiceImpl<typeof OrderService> {
  return {
    placeOrder: (req, ctx) =>
      mapped(async () => {
        const order = await placeOrder(
          { orders: deps.orders(), catalogue: deps.catalogue() },
          {
            userId: callerOf(ctx),
            idempotencyKey: req.idempotencyKey,
            items: req.items.map((i) => ({ productId: i.productId, quantity: Number(i.quantity) })),
          },
        );
        return { order: toOrderMessage(order) };
      }),
    getOrder: (req, ctx) =>
      mapped(async () => {
        const order = await getOrder({ orders: deps.orders() }, { userId: callerOf(ctx), orderId: req.id });
        return { order: toOrderMessage(order) };
      }),
    listOrders: (req, ctx) =>
      mapped(async () => {
        const page = await listOrders(
          { orders: deps.orders() },
          {
            userId: callerOf(ctx),
            roles: rolesOf(ctx),
            allUsers: req.allUsers,
            ofUser: req.userId,
            pageSize: req.pageSize,
            pageToken: req.pageToken,
          },
        );
        return { orders: page.orders.map(toOrderMessage), nextPageToken: page.nextPageToken };
      }),
    cancelOrder: (req, ctx) =>
      mapped(async () => {
        const order = await cancelOrder(
          { orders: deps.orders(), kick: deps.kick },
          { userId: callerOf(ctx), orderId: req.id },
        );
        return { order: toOrderMessage(order) };
      }),
    listSagas: (req, ctx) =>
      mapped(async () => {
        callerOf(ctx);
        const page = await listSagas(
          { sagas: deps.sagas() },
          {
            roles: rolesOf(ctx),
            states: req.states.map(stateOf),
            pageSize: req.pageSize,
            pageToken: req.pageToken,
          },
        );
        const steps = deps.sagaSteps();
        return {
          sagas: page.sagas.map((s) => toSagaSummaryMessage(s, steps)),
          nextPageToken: page.nextPageToken,
        };
      }),
    getSaga: (req, ctx) =>
      mapped(async () => {
        callerOf(ctx);
        const row = await getSaga({ sagas: deps.sagas() }, { roles: rolesOf(ctx), sagaId: req.id });
        return { saga: toSagaMessage(row, deps.sagaSteps()) };
      }),
    async *watchOrder(req, ctx) {
      const updates = watchOrder(
        { orders: deps.orders(), watch: deps.watch(), limit: deps.watchLimit },
        { userId: callerOf(ctx), orderId: req.id, signal: ctx.signal },
      );
      try {
        for await (const order of updates) yield { order: toOrderMessage(order) };
      } catch (err) {
        throw toConnectError(err);
      }
    },
  };
}
