import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OrderPlacedSchema } from "@meshwork/contracts/meshwork/orders/v1/events";
import { type AnyTransaction, type Database, prepareStatement } from "@meshwork/db";
import { and, eq, sql, TransactionRollbackError } from "drizzle-orm";
import {
  IdempotencyKeyReusedError,
  type NewOrder,
  type Order,
  type PlacementData,
} from "../../domain/order.js";
import { columns, notifying, recordEvent } from "./order-rows.js";
import { type OrdersSchema, orders } from "./schema.js";

/** Starts the placement saga of an order inside the placing transaction; see `placeOrder`. */
export type StartPlacement = (
  tx: AnyTransaction,
  instance: { id: string; data: PlacementData },
) => Promise<(() => void) | undefined>;

/**
 * PlaceOrder's lookup by idempotency key, built once per database (as users' GetUser query is):
 * Drizzle otherwise builds its SQL text from its parts on every placement.
 */
function prepareFindByKey(db: Database<OrdersSchema>) {
  return db
    .select({ ...columns, requestHash: orders.requestHash })
    .from(orders)
    .where(
      and(eq(orders.userId, sql.placeholder("userId")), eq(orders.idempotencyKey, sql.placeholder("key"))),
    )
    .prepare("orders_find_by_key");
}
const findByKeyQueries = new WeakMap<Database<OrdersSchema>, ReturnType<typeof prepareFindByKey>>();

/** The user's order placed with an idempotency key, with the hash of the request that placed it. */
export async function findByKey(db: Database<OrdersSchema>, userId: string, key: string) {
  let query = findByKeyQueries.get(db);
  if (!query) {
    query = prepareFindByKey(db);
    findByKeyQueries.set(db, query);
  }
  const [row] = await query.execute({ userId, key });
  return row as (Order & { requestHash: string }) | undefined;
}

/**
 * Inserts the order, starts its saga and records OrderPlaced, in one transaction. A concurrent
 * placement with the same key wins or loses on the unique key: the loser gets the winner's order
 * (or IdempotencyKeyReusedError when the requests differ). `startPlacement` starts the placement
 * saga in the transaction (the executor's `startIn`, or `startSaga`); what it returns is called
 * after the commit.
 */
export async function placeOrder(
  db: Database<OrdersSchema>,
  namespace: string,
  order: NewOrder,
  startPlacement: StartPlacement,
): Promise<{ order: Order; created: boolean; run?: () => void }> {
  let run: (() => void) | undefined;
  const created = await db
    .transaction(async (tx) => {
      const placed = await insertPlaced(tx, namespace, order, startPlacement);
      if (!placed) return tx.rollback(); // another placement took the key
      run = placed.run;
      return placed.order;
    })
    .catch((err: unknown) => {
      if (err instanceof TransactionRollbackError) return undefined;
      throw err;
    });
  if (created) return { order: created, created: true, run };
  const existing = await findByKey(db, order.userId, order.idempotencyKey);
  if (!existing) throw new Error(`order for key ${order.idempotencyKey} vanished`);
  if (existing.requestHash !== order.requestHash) throw new IdempotencyKeyReusedError(order.idempotencyKey);
  const { requestHash: _h, ...o } = existing;
  return { order: o, created: false };
}

/** The new order's insert (a no-op when its key is taken), built by Drizzle once. */
const insertOrder = prepareStatement<Order & { notified: unknown }>("orders_insert", (q) => {
  const ph = (name: string) => sql.placeholder(name) as unknown as never;
  return q
    .insert(orders)
    .values({
      id: ph("id"),
      userId: ph("userId"),
      idempotencyKey: ph("idempotencyKey"),
      requestHash: ph("requestHash"),
      items: ph("items"),
      totalMinor: ph("totalMinor"),
      currency: ph("currency"),
      status: "pending",
      createdAt: ph("createdAt"),
      updatedAt: ph("createdAt"),
    })
    .onConflictDoNothing({ target: [orders.userId, orders.idempotencyKey] })
    .returning(notifying("pending"));
});

/**
 * The order, its saga (started with the first step's check vouched for: the order is inserted
 * here, not cancelled and locked) and its event go out together, pipelined on the transaction's
 * connection in the order they are started: the order first. Undefined when another placement
 * won the key (the insert is a no-op): the caller rolls the saga and the event back.
 */
async function insertPlaced(
  tx: AnyTransaction,
  namespace: string,
  order: NewOrder,
  startPlacement: StartPlacement,
): Promise<{ order: Order; run: (() => void) | undefined } | undefined> {
  const createdAt = new Date();
  const inserting = insertOrder.execute(tx, { ...order, createdAt });
  const [[row], started] = await Promise.all([
    inserting,
    startPlacement(tx, {
      id: order.id,
      data: {
        userId: order.userId,
        items: order.items.map((i) => ({ productId: i.productId, quantity: i.quantity })),
        totalMinor: order.totalMinor,
        currency: order.currency,
      },
    }),
    recordEvent(
      tx,
      namespace,
      OrderPlacedSchema,
      create(OrderPlacedSchema, {
        orderId: order.id,
        userId: order.userId,
        total: { amountMinor: BigInt(order.totalMinor), currency: order.currency },
        placeTime: timestampFromDate(createdAt),
        items: order.items.map((i) => ({
          productId: i.productId,
          quantity: BigInt(i.quantity),
          unitPrice: { amountMinor: BigInt(i.unitPriceMinor), currency: order.currency },
        })),
      }),
    ),
  ]);
  if (!row) return undefined;
  const { notified: _, ...placed } = row;
  return { order: placed as Order, run: started };
}
