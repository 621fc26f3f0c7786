import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type Order as OrderMessage,
  OrderSchema,
  type OrderService,
  OrderStatus,
} from "@meshwork/contracts/meshwork/orders/v1/orders";
import { InvalidPageTokenError, keysetTokens, pageSize } from "@meshwork/db";
import { mapErrors } from "@meshwork/runtime";
import { v7 as uuidv7 } from "uuid";
import type { Catalogue } from "../../adapters/catalogue.js";
import type { OrderStore, StartPlacement } from "../../adapters/db/order-store.js";
import type { OrderWatch } from "../../app/order-watch.js";
import {
  IdempotencyKeyReusedError,
  InvalidOrderError,
  type Order,
  OrderNotFoundError,
  OrderStateError,
  requestHash,
  TERMINAL,
} from "../../domain/order.js";

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

/** How far along a status is; a watch only moves forward. */
const RANK: Record<Order["status"], number> = {
  pending: 0,
  stock_reserved: 1,
  payment_authorized: 2,
  confirmed: 3,
  cancelled: 3,
};

/** The one place where the service's domain errors become status codes. */
function toConnectError(err: unknown): unknown {
  if (err instanceof OrderNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof IdempotencyKeyReusedError) return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof OrderStateError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof InvalidOrderError || err instanceof InvalidPageTokenError)
    return new ConnectError(err.message, Code.InvalidArgument);
  return err;
}

const mapped = mapErrors(toConnectError);

/**
 * The caller: the subject the gateway verified and sent upstream (it strips the header from
 * clients). A call without it did not come through the gateway's authentication.
 */
export function callerOf(ctx: HandlerContext): string {
  const subject = ctx.requestHeader.get("x-meshwork-subject");
  if (!subject) {
    throw new ConnectError(
      "no verified caller: call OrderService through the gateway with a token",
      Code.Unauthenticated,
    );
  }
  return subject;
}

/** The caller's roles, as the gateway verified them (comma-separated). */
function rolesOf(ctx: HandlerContext): string[] {
  return (ctx.requestHeader.get("x-meshwork-roles") ?? "").split(",").map((r) => r.trim());
}

const pages = keysetTokens("o1:", "ListOrders");

export interface OrderHandlerDeps {
  orders: () => OrderStore;
  /** Product prices (inventory behind a cache). */
  catalogue: () => Catalogue;
  /** Starts an order's placement saga in the placing transaction (run at once after commit). */
  startPlacement: StartPlacement;
  /** Wakes the saga executor after a cancellation commits. */
  kick: () => void;
  watch: () => OrderWatch;
}

/** Translates between the proto messages and the order store. */
export function createOrderServiceHandlers(deps: OrderHandlerDeps): ServiceImpl<typeof OrderService> {
  return {
    placeOrder: (req, ctx) =>
      mapped(async () => {
        const userId = callerOf(ctx);
        const items = req.items.map((i) => ({ productId: i.productId, quantity: Number(i.quantity) }));
        if (new Set(items.map((i) => i.productId)).size !== items.length) {
          throw new InvalidOrderError("items: a product appears more than once");
        }
        const hash = requestHash(items);
        const existing = await deps.orders().findByKey(userId, req.idempotencyKey);
        if (existing) {
          if (existing.requestHash !== hash) throw new IdempotencyKeyReusedError(req.idempotencyKey);
          return { order: toOrderMessage(existing) };
        }
        // Prices from the catalogue, now: the order keeps them.
        const prices = await Promise.all(
          items.map(async (i) => {
            try {
              return await deps.catalogue().price(i.productId);
            } catch (err) {
              const e = ConnectError.from(err);
              if (e.code === Code.NotFound)
                throw new ConnectError(`product ${i.productId} not found`, Code.NotFound);
              throw e;
            }
          }),
        );
        const currencies = new Set(prices.map((p) => p.currency));
        if (currencies.size !== 1) {
          throw new InvalidOrderError(
            `items: products are priced in different currencies (${[...currencies].join(", ")})`,
          );
        }
        const stored = items.map((i, n) => ({
          ...i,
          unitPriceMinor: Number(prices[n]?.amountMinor ?? 0n),
        }));
        const { order, run } = await deps.orders().place(
          {
            id: uuidv7(),
            userId,
            idempotencyKey: req.idempotencyKey,
            requestHash: hash,
            items: stored,
            totalMinor: stored.reduce((sum, i) => sum + i.unitPriceMinor * i.quantity, 0),
            currency: [...currencies][0] as string,
          },
          deps.startPlacement,
        );
        run?.();
        return { order: toOrderMessage(order) };
      }),
    getOrder: (req, ctx) =>
      mapped(async () => ({ order: toOrderMessage(await deps.orders().get(callerOf(ctx), req.id)) })),
    listOrders: (req, ctx) =>
      mapped(async () => {
        const size = pageSize(req.pageSize);
        const before = req.pageToken ? pages.decode(req.pageToken) : undefined;
        const caller = callerOf(ctx);
        if (req.allUsers && !rolesOf(ctx).includes("admin")) {
          throw new ConnectError("all_users: needs the admin role", Code.PermissionDenied);
        }
        const rows = await deps.orders().listBefore(req.allUsers ? undefined : caller, before, size + 1);
        const { items, nextPageToken } = pages.page(rows, size);
        return { orders: items.map(toOrderMessage), nextPageToken };
      }),
    cancelOrder: (req, ctx) =>
      mapped(async () => {
        const order = await deps.orders().requestCancel(callerOf(ctx), req.id);
        deps.kick();
        return { order: toOrderMessage(order) };
      }),
    async *watchOrder(req, ctx) {
      const userId = callerOf(ctx);
      // Subscribe first, then read: a change between the two is in the subscription.
      const changes = deps.watch().subscribe(req.id, ctx.signal);
      try {
        let current = await mapped(() => deps.orders().get(userId, req.id));
        yield { order: toOrderMessage(current) };
        if (TERMINAL.has(current.status)) return;
        // Each status the order passes through, in commit order; older ones are skipped.
        for await (const change of changes) {
          // After a lost notification the order is read again: it may have moved on meanwhile.
          const status =
            change === "resync" ? ((await deps.orders().byId(req.id))?.status ?? current.status) : change;
          if (RANK[status] <= RANK[current.status]) continue;
          current = TERMINAL.has(status)
            ? ((await deps.orders().byId(req.id)) ?? { ...current, status })
            : { ...current, status };
          yield { order: toOrderMessage(current) };
          if (TERMINAL.has(current.status)) return;
        }
      } finally {
        changes.close();
      }
    },
  };
}
