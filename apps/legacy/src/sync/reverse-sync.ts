import { createRegistry } from "@bufbuild/protobuf";
import {
  file_meshwork_inventory_v1_events,
  type ProductUpdated,
  type StockChanged,
} from "@meshwork/contracts/meshwork/inventory/v1/events";
import type { AnyTransaction } from "@meshwork/db";
import {
  createForeignConsumer,
  type EventConsumer,
  type EventContext,
  type EventsConfig,
  meshStreams,
} from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import { sql } from "drizzle-orm";
import { type CdcDatabase, meshInbox } from "./cdc-relay.js";

/**
 * The `ce-source` of the events inventory writes when it applies a change captured here. The
 * reverse sync skips them: that change came from this database, and applying it back would
 * capture nothing (the origin marker below) but would still be a wasted round trip and, with
 * the trigger's marker gone, a loop. Kept equal to inventory's constant (both are contract).
 */
export const LEGACY_SYNC_SOURCE = "meshwork/inventory/legacy-sync";

const DURABLE = "legacy-reverse-sync";

/**
 * Runs a reverse-sync write with the origin marker: the CDC trigger does not capture changes
 * made with `meshwork.origin = 'mesh'` (transaction-local), so they never travel back.
 */
async function markOrigin(tx: AnyTransaction): Promise<void> {
  await tx.execute(sql`select set_config('meshwork.origin', 'mesh', true)`);
}

/**
 * Raises the product's high-water mark for one kind of change (`name_version` for ProductUpdated,
 * `stock_version` for StockChanged) to `version`; false when a newer or equal one was applied
 * already (a late or repeated event). Each kind carries the whole state of its part, so the
 * newest of each kind wins independently.
 */
async function claimVersion(
  tx: AnyTransaction,
  productId: string,
  column: "name_version" | "stock_version",
  version: bigint,
): Promise<boolean> {
  const col = sql.raw(column);
  const rows = (await tx.execute(
    sql`insert into mesh_sync (product_id, ${col}) values (${productId}, ${String(version)})
        on conflict (product_id) do update set ${col} = excluded.${col}, applied_at = now()
        where mesh_sync.${col} < excluded.${col}
        returning product_id`,
  )) as unknown as unknown[];
  return rows.length > 0;
}

/** ProductUpdated from inventory -> legacy's products row (name, price). */
export async function applyProductUpdated(
  tx: AnyTransaction,
  e: ProductUpdated,
  event: Pick<EventContext, "source">,
): Promise<"applied" | "skipped"> {
  if (event.source === LEGACY_SYNC_SOURCE) return "skipped";
  // The product's row first, as the capture trigger does: a capture either commits before this
  // write (and its `seen_name_version` is the older mark) or reads the mark this one sets.
  await tx.execute(sql`select 1 from products where id = ${e.productId} for no key update`);
  if (!(await claimVersion(tx, e.productId, "name_version", e.version))) return "skipped";
  await markOrigin(tx);
  await tx.execute(
    sql`update products set name = ${e.name}, price_minor = ${String(e.price?.amountMinor ?? 0n)},
        currency = ${e.price?.currency ?? "EUR"}, updated_at = now() where id = ${e.productId}`,
  );
  return "applied";
}

/** StockChanged from inventory -> legacy's stock row (units on hand). */
export async function applyStockChanged(
  tx: AnyTransaction,
  e: StockChanged,
  event: Pick<EventContext, "source">,
): Promise<"applied" | "skipped"> {
  if (event.source === LEGACY_SYNC_SOURCE) return "skipped";
  // The lock order of the monolith: a product's row before its stock row (the order path locks
  // both in that order, and the capture trigger locks the product after any stock write). Updating
  // stock first would hold the stock row while the trigger waits for the product: a deadlock with
  // a concurrent order on the same product.
  await tx.execute(sql`select 1 from products where id = ${e.productId} for no key update`);
  if (!(await claimVersion(tx, e.productId, "stock_version", e.version))) return "skipped";
  await markOrigin(tx);
  // Units this database sold while the mesh's reservations held them stay in the mesh's on_hand
  // until they free up (`held_back`): left out here, so they are never sold twice.
  const onHand = e.onHand - (e.heldBack ?? 0n);
  await tx.execute(
    sql`update stock set on_hand = ${String(onHand > 0n ? onHand : 0n)}, updated_at = now() where product_id = ${e.productId}`,
  );
  return "applied";
}

/**
 * The reverse sync: once a write route is cut over, the new service owns those writes, and its
 * events (ProductUpdated, StockChanged, published through its outbox) are applied into the
 * monolith's tables so its reports stay right until it is retired. A durable consumer on the
 * INVENTORY stream with an inbox in this database; nothing in a request handler writes twice.
 * A product the monolith never had (created in the mesh) is left out: legacy's reports cover
 * legacy's catalogue.
 */
export async function startReverseSync(options: {
  database: CdcDatabase;
  events: EventsConfig;
  nc: NatsConnection;
  logger: Logger;
}): Promise<EventConsumer> {
  const { database, events, nc, logger } = options;
  // The inventory service's stream: consumed, never declared here (its owner sets its config).
  const consumer = createForeignConsumer(
    { service: "legacy", config: events, nc, database, inbox: meshInbox, logger },
    {
      stream: meshStreams.inventory(events.namespace),
      durable: DURABLE,
      registry: createRegistry(file_meshwork_inventory_v1_events),
      handlers: {
        "meshwork.inventory.v1.ProductUpdated": async (m, tx, event) => {
          await applyProductUpdated(tx, m as ProductUpdated, event);
        },
        "meshwork.inventory.v1.StockChanged": async (m, tx, event) => {
          await applyStockChanged(tx, m as StockChanged, event);
        },
      },
    },
  );
  await consumer.start();
  return consumer;
}
