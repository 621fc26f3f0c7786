import { createRegistry } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  file_meshwork_orders_v1_events,
  type OrderCancelled,
  type OrderConfirmed,
  type OrderPlaced,
} from "@meshwork/contracts/meshwork/orders/v1/events";
import type { AnyTransaction } from "@meshwork/db";
import { createForeignConsumer, type EventConsumer, type EventsConfig, meshStreams } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import { sql } from "drizzle-orm";
import { type CdcDatabase, meshInbox } from "./cdc-relay.js";

/**
 * The reverse sync of orders (strangler fig, writes): once `POST /api/orders` is cut over, the
 * orders service takes the orders, and its events (OrderPlaced, OrderConfirmed, OrderCancelled on
 * the ORDERS stream) are copied into the monolith's `orders` and `order_items` so its reports
 * (`GET /api/users/{id}/orders`, `GET /api/orders/{id}`) stay right until it is retired.
 *
 * - **Under the mesh's id**, with `mesh:<id>` as the idempotency key (the monolith's own keys are
 *   the clients'; the prefix keeps the two apart) and the mesh's place time as `created_at`.
 * - **No stock is touched.** Inventory's StockChanged (the products reverse sync) already carries
 *   the stock the order took; decrementing here too would take it twice.
 * - **Version guard.** An order's status only moves forward: PENDING, then one of CONFIRMED or
 *   CANCELLED. The first terminal event is kept in `mesh_order_sync`; a late OrderPlaced inserts
 *   the order with it, and a repeated or late event changes nothing. Exactly-once effect per
 *   event comes from the inbox besides.
 * - **Origin marker.** Writes run with `meshwork.origin = 'mesh'`, like the products' reverse
 *   sync, so a capture of the monolith's tables (now or later) does not send them back.
 * - An order of a user or a product the monolith does not know (made in the mesh) is left out,
 *   as the products' reverse sync leaves mesh-made products out: its foreign keys could not hold.
 */
const DURABLE = "legacy-order-sync";

/** The sync's own state, created by the sync (not the monolith's migrations): it owns it. */
export const ORDER_SYNC_SCHEMA = `CREATE TABLE IF NOT EXISTS mesh_order_sync (
  order_id uuid PRIMARY KEY,
  status text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`;

const PENDING = "ORDER_STATUS_PENDING";

/** An event's time as ISO text (now when the event carries none). */
function isoOf(time: Timestamp | undefined): string {
  return (time ? timestampDate(time) : new Date()).toISOString();
}

async function markOrigin(tx: AnyTransaction): Promise<void> {
  await tx.execute(sql`select set_config('meshwork.origin', 'mesh', true)`);
}

/**
 * Serialises the order sync's batches across legacy replicas sharing the durable consumer: one
 * lock for the whole sync, taken by a batch's first order event and held until the batch's
 * transaction ends (savepoints do not release it). Without it an OrderConfirmed applied in one
 * process while another's OrderPlaced is uncommitted would find no row to update, and the
 * placement would then commit PENDING for good. One lock rather than one per order: a batch's
 * handlers run per event type, so its orders cannot all be locked up front in a sorted order, and
 * locks per order taken in event order let two replicas' batches ([A placed, B confirmed] and
 * [B placed, A confirmed]) deadlock, each abort a step towards the dead letters. A later
 * statement sees what the other committed (READ COMMITTED). The cost, replicas applying one batch
 * at a time, is small for the monolith's reports (a batch is one commit).
 */
async function lockSync(tx: AnyTransaction): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext('legacy-order-sync'))`);
}

async function rows<T>(tx: AnyTransaction, query: ReturnType<typeof sql>): Promise<T[]> {
  return (await tx.execute(query)) as unknown as T[];
}

/** OrderPlaced -> a new order in the monolith's tables (PENDING, or the terminal status seen first). */
export async function applyOrderPlaced(tx: AnyTransaction, e: OrderPlaced): Promise<"applied" | "skipped"> {
  // An OrderPlaced from before the event carried its items cannot make legacy's order lines.
  if (e.items.length === 0) return "skipped";
  await lockSync(tx);
  const productIds = e.items.map((i) => i.productId.toLowerCase());
  const known = await rows<{ users: string; products: string }>(
    tx,
    sql`select (select count(*) from users where id = ${e.userId}) as users,
               (select count(*) from products where id = any(${`{${productIds.join(",")}}`}::uuid[])) as products`,
  );
  if (Number(known[0]?.users) !== 1 || Number(known[0]?.products) !== new Set(productIds).size)
    return "skipped";
  const [seen] = await rows<{ status: string }>(
    tx,
    sql`select status from mesh_order_sync where order_id = ${e.orderId}`,
  );
  await markOrigin(tx);
  const placed = isoOf(e.placeTime);
  const inserted = await rows<{ id: string }>(
    tx,
    sql`insert into orders (id, user_id, idempotency_key, status, total_minor, currency, created_at, updated_at)
        values (${e.orderId}, ${e.userId}, ${`mesh:${e.orderId}`}, ${seen?.status ?? PENDING},
                ${String(e.total?.amountMinor ?? 0n)}, ${e.total?.currency ?? "EUR"}, ${placed}, ${placed})
        on conflict (id) do nothing returning id`,
  );
  if (inserted.length === 0) return "skipped";
  for (const item of e.items) {
    await tx.execute(
      sql`insert into order_items (order_id, product_id, quantity, unit_price_minor)
          values (${e.orderId}, ${item.productId.toLowerCase()}, ${String(item.quantity)},
                  ${String(item.unitPrice?.amountMinor ?? 0n)})`,
    );
  }
  return "applied";
}

/** OrderConfirmed / OrderCancelled -> the order's final status, once. */
export async function applyOrderEnded(
  tx: AnyTransaction,
  e: OrderConfirmed | OrderCancelled,
  status: "ORDER_STATUS_CONFIRMED" | "ORDER_STATUS_CANCELLED",
): Promise<"applied" | "skipped"> {
  await lockSync(tx);
  const claimed = await rows<{ order_id: string }>(
    tx,
    sql`insert into mesh_order_sync (order_id, status) values (${e.orderId}, ${status})
        on conflict (order_id) do nothing returning order_id`,
  );
  if (claimed.length === 0) return "skipped";
  await markOrigin(tx);
  const time = e.$typeName === "meshwork.orders.v1.OrderConfirmed" ? e.confirmTime : e.cancelTime;
  await tx.execute(
    sql`update orders set status = ${status}, updated_at = ${isoOf(time)}
        where id = ${e.orderId} and status = ${PENDING}`,
  );
  return "applied";
}

/** Starts the durable consumer of the ORDERS stream that keeps the monolith's orders tables. */
export async function startOrderSync(options: {
  database: CdcDatabase;
  events: EventsConfig;
  nc: NatsConnection;
  logger: Logger;
}): Promise<EventConsumer> {
  const { database, events, nc, logger } = options;
  await database.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('legacy-order-sync-schema'))`);
    await tx.execute(sql.raw(ORDER_SYNC_SCHEMA));
  });
  // The orders service's stream: consumed, never declared here (its owner sets its replicas).
  const consumer = createForeignConsumer(
    { service: "legacy", config: events, nc, database, inbox: meshInbox, logger },
    {
      stream: meshStreams.orders(events.namespace),
      durable: DURABLE,
      registry: createRegistry(file_meshwork_orders_v1_events),
      handlers: {
        "meshwork.orders.v1.OrderPlaced": async (m, tx) => {
          if ((await applyOrderPlaced(tx, m as OrderPlaced)) === "skipped")
            logger.debug({ order: (m as OrderPlaced).orderId }, "order sync: placed order left out or seen");
        },
        "meshwork.orders.v1.OrderConfirmed": async (m, tx) => {
          await applyOrderEnded(tx, m as OrderConfirmed, "ORDER_STATUS_CONFIRMED");
        },
        "meshwork.orders.v1.OrderCancelled": async (m, tx) => {
          await applyOrderEnded(tx, m as OrderCancelled, "ORDER_STATUS_CANCELLED");
        },
      },
    },
  );
  await consumer.start();
  return consumer;
}
