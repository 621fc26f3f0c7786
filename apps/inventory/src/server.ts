import { fileURLToPath } from "node:url";
import { createRegistry } from "@bufbuild/protobuf";
import type { InvalidationFeed } from "@meshwork/cache";
import {
  file_meshwork_inventory_v1_inventory,
  InventoryService,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { file_meshwork_legacy_v1_events } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type DatabaseHandle, databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import {
  createForeignConsumer,
  type EventConsumer,
  meshStreams,
  type OutboxPublisher,
  startOutboxPublisher,
} from "@meshwork/events";
import { createService, packageVersion, type Service, telemetryOptions } from "@meshwork/runtime";
import { createLogger, createTelemetry, type Logger, type Telemetry } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import { followProductEvents, openProductCache } from "./adapters/cache/product-cache.js";
import { createInventoryStore } from "./adapters/db/inventory-store.js";
import { type InventorySchema, inbox, outbox, schema } from "./adapters/db/schema.js";
import type { Config } from "./config.js";
import type { InventoryRepository } from "./domain/ports.js";
import { onLegacyProductChanged } from "./ports/events/legacy-product-changed.js";
import { createInventoryServiceHandlers, type ProductCache } from "./ports/rpc/inventory-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
const SERVICE = "inventory";
/** The durable consumer on the LEGACY stream (the monolith's change data capture). */
export const LEGACY_SYNC_DURABLE = "inventory-legacy-sync";

/**
 * Wires the inventory service: its database (migrated before it reports SERVING), the
 * InventoryService handlers over the stock store, the outbox relay (INVENTORY stream:
 * ProductUpdated, StockChanged), the product cache (L1, L2 on NATS KV or Redis, invalidated by
 * this instance's own writes at once and by every instance's events through the feed), and its
 * entry in the discovery registry.
 */
export async function createInventoryService(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
): Promise<Service> {
  // The cache's metrics need the meter before the service exists.
  const logger = observe.logger ?? createLogger({ service: SERVICE, level: config.runtime.logLevel });
  const telemetry = observe.telemetry ?? createTelemetry(telemetryOptions(SERVICE, VERSION, config.runtime));
  const database = await openDatabase(config.db, schema, { telemetry });
  let cache: ProductCache | undefined;
  const store = createInventoryStore(database.db, {
    namespace: config.events.namespace,
    // This instance drops what it changed at once; the others hear of it through the feed.
    onChanged: (changes) => {
      for (const c of changes) void cache?.invalidate(c.productId, c.version);
    },
  });
  const discovery = createDiscovery(config.discovery, { service: SERVICE, version: VERSION, telemetry });
  let migrated = false;
  let publisher: OutboxPublisher | undefined;
  let feed: InvalidationFeed | undefined;
  let legacySync: EventConsumer | undefined;
  const ready = (): InventoryRepository => {
    if (!migrated) throw new Error("inventory used before start-up finished");
    return store;
  };
  const productCache = (): ProductCache => {
    if (!cache) throw new Error("inventory used before start-up finished");
    return cache;
  };
  const service: Service = createService({
    name: SERVICE,
    version: VERSION,
    config: config.runtime,
    files: [file_meshwork_inventory_v1_inventory],
    services: [InventoryService],
    logger,
    telemetry,
    routes(router) {
      router.service(InventoryService, createInventoryServiceHandlers(ready, logger, productCache));
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, telemetry.meter);
      publisher = await startInventoryOutbox(config, database, logger, telemetry);
      cache = await openProductCache(config, publisher.nc, SERVICE, telemetry, logger);
      feed = followProductEvents(cache, publisher.nc, meshStreams.inventory(config.events.namespace), logger);
      legacySync = await startLegacySync(config, publisher.nc, database, logger, telemetry);
      // Serving before the feed is attached would let a change go unheard; NATS answered the
      // publisher a moment ago, so this is quick (bounded anyway: the feed keeps trying).
      await Promise.race([feed.attached, new Promise((r) => setTimeout(r, 10_000).unref())]);
      migrated = true;
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      await legacySync?.stop();
      await feed?.stop();
      await cache?.close();
      await publisher?.stop();
      await discovery.close();
      await database.close();
    },
  });
  return service;
}

/**
 * The only LEGACY subject inventory's consumer reads: the stream also carries UserChanged (with
 * legacy's password hashes), which must never be delivered here.
 */
export const legacyProductsSubject = (ns: string) => `${ns}meshwork.legacy.v1.ProductChanged`;

/**
 * Strangler fig, reads first: a durable consumer on the LEGACY stream (its ProductChanged
 * subject only) applies the monolith's captured product changes (and backfill snapshots) here,
 * idempotently by capture sequence.
 * Legacy owns the stream: inventory never declares it (its NATS user may not) and its sync waits
 * for it when legacy has not created it yet, so inventory starts whether or not the monolith runs.
 */
async function startLegacySync(
  config: Config,
  nc: NatsConnection,
  database: DatabaseHandle<InventorySchema>,
  logger: Logger,
  telemetry: Telemetry,
): Promise<EventConsumer> {
  const ns = config.events.namespace;
  const consumer = createForeignConsumer(
    { service: SERVICE, config: config.events, nc, database, inbox, logger, telemetry },
    {
      stream: meshStreams.legacy(ns),
      durable: LEGACY_SYNC_DURABLE,
      filterSubject: legacyProductsSubject(ns),
      registry: createRegistry(file_meshwork_legacy_v1_events),
      handlers: { "meshwork.legacy.v1.ProductChanged": onLegacyProductChanged(ns, logger) },
    },
  );
  await consumer.start();
  return consumer;
}

/** The outbox relay to the INVENTORY stream (ProductUpdated, StockChanged). */
function startInventoryOutbox(
  config: Config,
  database: DatabaseHandle<InventorySchema>,
  logger: Logger,
  telemetry: Telemetry,
): Promise<OutboxPublisher> {
  return startOutboxPublisher({
    service: SERVICE,
    config: config.events,
    stream: meshStreams.inventory(config.events.namespace),
    database,
    table: outbox,
    logger,
    tracer: telemetry.tracer,
    meter: telemetry.meter,
  });
}
