/**
 * The placement saga of apps/orders written on DBOS Transact, for the orders bench's peer
 * comparison (issue 24.2). A process of its own (so its CPU can be read from /proc): a bare
 * grpc-js server answering `OrderService.PlaceOrder`, its orders in an application database and
 * DBOS's checkpoints in a system database of their own, both on the mesh's Postgres, and the same
 * calls to the same inventory and payments services as the orders service makes, signed as
 * the orders service.
 *
 * As apps/orders does it: PlaceOrder checks the user's idempotency key, prices the items from
 * inventory's catalogue (kept in this process, as orders' product cache does), stores the order
 * (pending) with its OrderPlaced event in one transaction and starts the placement workflow
 * (its id is the order id, so a restart resumes it and never runs it twice). The workflow:
 * reserve stock -> mark stock_reserved (and read a cancellation) -> authorize payment -> mark
 * payment_authorized and capture started -> capture payment, commit the reservation -> confirm
 * with OrderConfirmed. No stock or a declined payment cancels the order; what was done is undone
 * in reverse (refund, void, release) and the order cancelled with OrderCancelled. Every database
 * write is a DBOS step whose statement is idempotent (keyed by the order id), which DBOS's
 * at-least-once steps need.
 *
 * Environment: DBOS_SYSTEM_DATABASE_URL, APP_DATABASE_URL, INVENTORY_URL, PAYMENTS_URL,
 * ORDERS_IDENTITY_KEY (the orders service's private key, to sign calls as it), APP_POOL_MAX and
 * SYSTEM_POOL_MAX (connections to each database; 10 each by default).
 * Prints `{"msg":"listening","port":N}` once it serves. The caller is named by the `x-user-id`
 * request header (this bench server has no authentication).
 */
import { createHash, randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { DBOS } from "@dbos-inc/dbos-sdk";
import * as grpc from "@grpc/grpc-js";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { OrderPlacedSchema } from "@meshwork/contracts/meshwork/orders/v1/events";
import {
  OrderStatus,
  PlaceOrderRequestSchema,
  type PlaceOrderResponse,
  PlaceOrderResponseSchema,
} from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { createAssertionSigner, createCallerInterceptor, privateKeyFrom } from "@meshwork/runtime";
import postgres from "postgres";

interface Placement {
  orderId: string;
  userId: string;
  items: Array<{ productId: string; quantity: number }>;
  totalMinor: number;
  currency: string;
}

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const sql = postgres(env("APP_DATABASE_URL"), {
  max: Number(process.env.APP_POOL_MAX ?? 10),
  onnotice: () => {},
});

/** The orders table as apps/orders keeps it (the columns the saga touches), and an outbox. */
async function migrate(): Promise<void> {
  await sql`create table if not exists orders (
    id uuid primary key, user_id text not null, idempotency_key text not null,
    request_hash text not null, items jsonb not null, total_minor bigint not null,
    currency text not null, status text not null, cancel_reason text,
    cancel_requested boolean not null default false, capture_started boolean not null default false,
    created_at timestamptz not null, updated_at timestamptz not null,
    unique (user_id, idempotency_key))`;
  await sql`create table if not exists outbox (
    id bigserial primary key, event_id uuid not null unique, type text not null, payload bytea not null,
    created_at timestamptz not null default now())`;
}

const signer = createAssertionSigner({
  issuer: "orders",
  privateKey: privateKeyFrom(env("ORDERS_IDENTITY_KEY")),
});
const inventory: Client<typeof InventoryService> = createClient(
  InventoryService,
  createGrpcTransport({
    baseUrl: env("INVENTORY_URL"),
    interceptors: [createCallerInterceptor(signer, "inventory")],
  }),
);
const payments: Client<typeof PaymentService> = createClient(
  PaymentService,
  createGrpcTransport({
    baseUrl: env("PAYMENTS_URL"),
    interceptors: [createCallerInterceptor(signer, "payments")],
  }),
);

const BUSINESS = new Set([Code.FailedPrecondition, Code.NotFound, Code.InvalidArgument, Code.AlreadyExists]);
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted]);
/** Steps that call another service retry what is transient there, as the orders saga does. */
const CALL = {
  retriesAllowed: true,
  maxAttempts: 5,
  intervalSeconds: 0.025,
  backoffRate: 2,
  shouldRetry: (e: unknown) => TRANSIENT.has(ConnectError.from(e).code),
};

/** A refusal by the other service (no stock, declined): the reason the order is cancelled. */
async function refusal(refused: string, work: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await work();
    return undefined;
  } catch (err) {
    const e = ConnectError.from(err);
    if (BUSINESS.has(e.code)) return `${refused}: ${e.rawMessage}`;
    throw e;
  }
}

/** A compensation that finds nothing to undo in this state is done too. */
async function undo(work: () => Promise<unknown>, nothingToUndo: ReadonlySet<Code> = new Set()) {
  try {
    await work();
    return true;
  } catch (err) {
    if (!nothingToUndo.has(ConnectError.from(err).code)) throw err;
    return false;
  }
}

/** Sets the order's status after a step; resolves with why the saga must stop, if it must. */
async function stepDone(id: string, status: string, capture: boolean): Promise<string | undefined> {
  const [row] = capture
    ? await sql<{ cancel_requested: boolean }[]>`update orders
        set status = ${status}, capture_started = capture_started or not cancel_requested, updated_at = now()
        where id = ${id} returning cancel_requested`
    : await sql<{ cancel_requested: boolean }[]>`update orders
        set status = ${status}, updated_at = now() where id = ${id} returning cancel_requested`;
  if (!row) return "the order no longer exists";
  return row.cancel_requested ? "cancelled by the customer" : undefined;
}

/** The order's last status with its event, in one transaction; a repeat changes nothing. */
async function finish(p: Placement, status: "confirmed" | "cancelled", reason?: string): Promise<void> {
  await sql.begin(async (tx) => {
    const [row] = await tx`update orders set status = ${status}, cancel_reason = ${reason ?? null},
      updated_at = now() where id = ${p.orderId} and status not in ('confirmed', 'cancelled') returning id`;
    if (!row) return;
    const payload = Buffer.from(JSON.stringify({ orderId: p.orderId, userId: p.userId, status, reason }));
    await tx`insert into outbox (event_id, type, payload) values (${randomUUID()}, ${`order.${status}`}, ${payload})`;
  });
}

async function placementWorkflow(p: Placement): Promise<string> {
  const id = p.orderId;
  const done: string[] = [];
  let reason = await DBOS.runStep(
    () =>
      refusal("out of stock", () =>
        inventory.reserveStock({
          reservationId: id,
          items: p.items.map((i) => ({ productId: i.productId, quantity: BigInt(i.quantity) })),
        }),
      ),
    { name: "reserve", ...CALL },
  );
  if (!reason) {
    done.push("reserve");
    reason = await DBOS.runStep(() => stepDone(id, "stock_reserved", false), { name: "reserved" });
  }
  if (!reason) {
    reason = await DBOS.runStep(
      () =>
        refusal("payment declined", () =>
          payments.authorizePayment({
            paymentId: id,
            userId: p.userId,
            amount: { amountMinor: BigInt(p.totalMinor), currency: p.currency },
          }),
        ),
      { name: "authorize", ...CALL },
    );
    done.push("authorize");
  }
  if (!reason)
    reason = await DBOS.runStep(() => stepDone(id, "payment_authorized", true), { name: "authorized" });
  if (!reason) {
    reason = await DBOS.runStep(
      async () =>
        (await refusal("payment refused", () => payments.capturePayment({ paymentId: id }))) ??
        (await refusal("stock lost", () => inventory.commitReservation({ reservationId: id }))),
      { name: "capture", ...CALL },
    );
    done.push("capture");
  }
  if (!reason) {
    await DBOS.runStep(() => finish(p, "confirmed"), { name: "confirm" });
    return "confirmed";
  }
  // Undo in reverse what was done (or may have been done, for a step that was refused).
  if (done.includes("capture")) {
    await DBOS.runStep(
      () => undo(() => payments.refundPayment({ paymentId: id }), new Set([Code.FailedPrecondition])),
      { name: "refund", ...CALL },
    );
  }
  if (done.includes("authorize")) {
    await DBOS.runStep(() => undo(() => payments.voidPayment({ paymentId: id })), { name: "void", ...CALL });
  }
  if (done.includes("reserve")) {
    await DBOS.runStep(() => undo(() => inventory.releaseReservation({ reservationId: id })), {
      name: "release",
      ...CALL,
    });
  }
  await DBOS.runStep(() => finish(p, "cancelled", reason), { name: "cancel" });
  return "cancelled";
}

const placement = DBOS.registerWorkflow(placementWorkflow, { name: "order-placement" });

/** Product prices, loaded from inventory once per product (orders' product cache, in effect). */
const prices = new Map<string, Promise<{ amountMinor: bigint; currency: string }>>();
function price(productId: string) {
  let p = prices.get(productId);
  if (!p) {
    p = inventory.getProduct({ id: productId }).then((r) => ({
      amountMinor: r.product?.price?.amountMinor ?? 0n,
      currency: r.product?.price?.currency ?? "",
    }));
    p.catch(() => prices.delete(productId));
    prices.set(productId, p);
  }
  return p;
}

function response(row: { id: string; user_id: string; status: string }): PlaceOrderResponse {
  const status = row.status === "pending" ? OrderStatus.PENDING : OrderStatus.UNSPECIFIED;
  return create(PlaceOrderResponseSchema, { order: { id: row.id, userId: row.user_id, status } });
}

async function placeOrder(userId: string, bytes: Uint8Array): Promise<PlaceOrderResponse> {
  const req = fromBinary(PlaceOrderRequestSchema, bytes);
  const items = req.items.map((i) => ({ productId: i.productId, quantity: Number(i.quantity) }));
  const hash = createHash("sha256").update(JSON.stringify(items)).digest("base64url");
  const [existing] = await sql<{ id: string; user_id: string; status: string; request_hash: string }[]>`
    select id, user_id, status, request_hash from orders
    where user_id = ${userId} and idempotency_key = ${req.idempotencyKey}`;
  if (existing) {
    if (existing.request_hash !== hash) throw new ConnectError("idempotency key reused", Code.AlreadyExists);
    return response(existing);
  }
  const priced = await Promise.all(items.map((i) => price(i.productId)));
  const totalMinor = priced.reduce((sum, p, n) => sum + Number(p.amountMinor) * (items[n]?.quantity ?? 0), 0);
  const order: Placement = {
    orderId: randomUUID(),
    userId,
    items,
    totalMinor,
    currency: priced[0]?.currency ?? "",
  };
  const placed = await sql.begin(async (tx) => {
    const [row] = await tx<{ id: string; user_id: string; status: string }[]>`insert into orders
      (id, user_id, idempotency_key, request_hash, items, total_minor, currency, status, created_at, updated_at)
      values (${order.orderId}, ${userId}, ${req.idempotencyKey}, ${hash}, ${JSON.stringify(items)}::jsonb,
        ${totalMinor}, ${order.currency}, 'pending', now(), now())
      on conflict (user_id, idempotency_key) do nothing returning id, user_id, status`;
    if (!row) return undefined;
    const event = create(OrderPlacedSchema, {
      orderId: order.orderId,
      userId,
      total: { amountMinor: BigInt(totalMinor), currency: order.currency },
    });
    await tx`insert into outbox (event_id, type, payload)
      values (${randomUUID()}, ${OrderPlacedSchema.typeName}, ${Buffer.from(toBinary(OrderPlacedSchema, event))})`;
    return row;
  });
  if (!placed) return placeOrder(userId, bytes); // a concurrent placement took the key
  await DBOS.startWorkflow(placement, { workflowID: order.orderId })(order);
  return response(placed);
}

async function main(): Promise<void> {
  await migrate();
  DBOS.setConfig({
    name: "meshwork-bench-orders",
    systemDatabaseUrl: env("DBOS_SYSTEM_DATABASE_URL"),
    systemDatabasePoolSize: Number(process.env.SYSTEM_POOL_MAX ?? 10),
    applicationVersion: "0.1.0",
    logLevel: "warn",
  });
  await DBOS.launch();
  const server = new grpc.Server();
  server.addService(
    {
      placeOrder: {
        path: "/meshwork.orders.v1.OrderService/PlaceOrder",
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Uint8Array) => Buffer.from(b),
        requestDeserialize: (b: Buffer) => new Uint8Array(b),
        responseSerialize: (r: PlaceOrderResponse) => Buffer.from(toBinary(PlaceOrderResponseSchema, r)),
        responseDeserialize: (b: Buffer) => fromBinary(PlaceOrderResponseSchema, b),
      },
    },
    {
      placeOrder: (
        call: grpc.ServerUnaryCall<Uint8Array, PlaceOrderResponse>,
        cb: grpc.sendUnaryData<PlaceOrderResponse>,
      ) => {
        const userId = String(call.metadata.get("x-user-id")[0] ?? "");
        if (!userId) return cb({ code: grpc.status.UNAUTHENTICATED, details: "x-user-id is missing" });
        placeOrder(userId, call.request).then(
          (r) => cb(null, r),
          (err: unknown) => {
            const e = ConnectError.from(err);
            cb({ code: e.code as number, details: e.rawMessage });
          },
        );
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  console.log(JSON.stringify({ msg: "listening", port }));
  const stop = async () => {
    server.forceShutdown();
    await DBOS.shutdown();
    await sql.end();
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop());
  process.once("SIGINT", () => void stop());
}

await main();
