import { fileURLToPath } from "node:url";
import { createRegistry } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import type { Cache, InvalidationFeed } from "@meshwork/cache";
import { InventoryService, type Product } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { file_meshwork_legacy_v1_events } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { file_meshwork_orders_v1_orders, OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { type DatabaseHandle, databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery, type Discovery } from "@meshwork/discovery";
import {
  createForeignConsumer,
  type EventConsumer,
  meshStreams,
  type OutboxPublisher,
  startOutboxPublisher,
} from "@meshwork/events";
import { createUpstreamPolicy } from "@meshwork/resilience";
import { createService, packageVersion, type Service, telemetryOptions } from "@meshwork/runtime";
import {
  createSagaExecutor,
  createSagaQueries,
  type SagaDefinition,
  type SagaExecutor,
} from "@meshwork/saga";
import { createLogger, createTelemetry, type Logger, type Telemetry } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import { createCatalogue, priceList } from "./adapters/catalogue.js";
import { createOrderStore, orderRepository, STATUS_CHANNEL } from "./adapters/db/order-store.js";
import { inbox, type OrdersSchema, outbox, sagas, schema } from "./adapters/db/schema.js";
import { openPriceCache } from "./adapters/price-cache.js";
import { createOrderMetrics } from "./app/order-metrics.js";
import { OrderWatch } from "./app/order-watch.js";
import { placementSaga } from "./app/placement-saga.js";
import { WatchLimit } from "./app/watch-limit.js";
import type { Config } from "./config.js";
import type { PlacementData } from "./domain/order.js";
import { onLegacyOrderChanged } from "./ports/events/legacy-order-changed.js";
import { createOrderServiceHandlers } from "./ports/rpc/order-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
const SERVICE = "orders";
/** The durable consumer of the legacy monolith's orders on the LEGACY stream. */
export const LEGACY_ORDER_SYNC_DURABLE = "orders-legacy-sync";

/**
 * Wires the orders service: its database (orders, sagas, outbox), clients of inventory and
 * payments found through discovery and each behind its own resilience policy, the placement
 * saga's executor, the outbox relay (ORDERS stream), WatchOrder's status feed, and its entry in
 * the registry.
 */
export async function createOrdersService(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
): Promise<Service> {
  const logger = observe.logger ?? createLogger({ service: SERVICE, level: config.runtime.logLevel });
  const telemetry = observe.telemetry ?? createTelemetry(telemetryOptions(SERVICE, VERSION, config.runtime));
  // Orders makes its own telemetry (it needs the meter before the service exists), so its
  // statements and calls name it instead of the process's global tracer.
  const database = await openDatabase(config.db, schema, { telemetry, logger });
  const orders = createOrderStore(database.db, config.events.namespace);
  const sagaQueries = createSagaQueries({ database, table: sagas });
  const discovery = createDiscovery(
    config.discovery,
    { service: SERVICE, version: VERSION, telemetry },
    { logger, meter: telemetry.meter },
  );
  const watch = new OrderWatch();
  const watchLimit = new WatchLimit(config.watchMaxPerUser);
  // Made by `prepare`: what needs the database migrated, NATS and the other services.
  const parts: OrdersParts = {};
  // Placement reads prices through `catalogue`, built once the cache's shared tier is open.
  const prices = priceList({ price: (id) => ready(parts.catalogue).price(id) });
  const metrics = createOrderMetrics(telemetry.meter);
  const repository = placementRepository(orders, parts, metrics);

  const service: Service = createService({
    name: SERVICE,
    version: VERSION,
    config: config.runtime,
    files: [file_meshwork_orders_v1_orders],
    services: [OrderService],
    logger,
    telemetry,
    routes(router) {
      router.service(
        OrderService,
        createOrderServiceHandlers({
          orders: () => repository,
          catalogue: () => prices,
          kick: () => parts.executor?.kick(),
          watch: () => watch,
          watchLimit,
          sagas: () => sagaQueries,
          sagaSteps: () => ready(parts.saga).steps.map((s) => s.name),
        }),
      );
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, telemetry.meter);
      await prepareOrders(parts, {
        config,
        database,
        discovery,
        service,
        orders,
        watch,
        metrics,
        logger,
        telemetry,
      });
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      await stopOrders(parts);
      await discovery.close();
      await database.close();
    },
  });
  return service;
}

/**
 * The order repository whose placement starts the saga in the placing transaction; counted when
 * that transaction committed (the function returned runs then).
 */
function placementRepository(
  orders: Parameters<typeof orderRepository>[0],
  parts: OrdersParts,
  metrics: ReturnType<typeof createOrderMetrics>,
) {
  return orderRepository(orders, async (tx, instance) => {
    // The placement inserts the order in this transaction (placement.ts): not cancelled, locked,
    // so the first step's check (a locking read of the order) has nothing to find.
    const run = await ready(parts.executor).startIn(tx, ready(parts.saga), instance, {
      firstStepChecked: true,
    });
    return () => {
      metrics.placed(instance.data);
      run();
    };
  });
}

/**
 * Clients of inventory and payments, found through discovery, each behind its own resilience
 * policy; the saga calls as the orders service itself (role `service`), signed with its own key.
 */
async function upstreamClients(
  config: Config,
  discovery: Discovery,
  service: Service,
  logger: Logger,
  telemetry: Telemetry,
) {
  const policy = (upstream: string) =>
    createUpstreamPolicy({
      upstream,
      defaultTimeoutMs: config.upstream.timeoutMs,
      retry: { maxAttempts: 3, initialDelayMs: 25, maxDelayMs: 250 },
      breaker: {
        consecutiveFailures: config.upstream.breakerFailures,
        halfOpenAfterMs: config.upstream.halfOpenAfterMs,
      },
      bulkhead: { limit: 256, queue: 1024 },
      logger,
      meter: telemetry.meter,
    });
  const transport = (upstream: string) =>
    discovery.transport(upstream, {
      interceptors: [policy(upstream).interceptor, ...service.identity.callsTo(upstream)],
    });
  return {
    inventory: createClient(InventoryService, await transport("inventory")),
    payments: createClient(PaymentService, await transport("payments")),
  };
}

/** The outbox relay to the ORDERS stream. */
function startOrdersOutbox(
  config: Config,
  database: DatabaseHandle<OrdersSchema>,
  logger: Logger,
  telemetry: Telemetry,
): Promise<OutboxPublisher> {
  return startOutboxPublisher({
    service: SERVICE,
    config: config.events,
    stream: meshStreams.orders(config.events.namespace, { replicas: config.events.streamReplicas }),
    database,
    table: outbox,
    logger: logger,
    tracer: telemetry.tracer,
    meter: telemetry.meter,
  });
}

/**
 * Strangler fig, orders follow the traffic: a durable consumer on the LEGACY stream (only its
 * OrderChanged subject) copies the monolith's orders here, idempotently by capture sequence.
 * Legacy owns the stream: orders never declares it (its NATS user may not) and its sync waits for
 * it when legacy has not created it yet, so orders starts whether or not the monolith runs.
 */
async function startLegacyOrderSync(
  config: Config,
  nc: NatsConnection,
  database: DatabaseHandle<OrdersSchema>,
  logger: Logger,
  telemetry: Telemetry,
): Promise<EventConsumer> {
  const ns = config.events.namespace;
  const consumer = createForeignConsumer(
    { service: SERVICE, config: config.events, nc, database, inbox, logger, telemetry },
    {
      stream: meshStreams.legacy(ns),
      durable: LEGACY_ORDER_SYNC_DURABLE,
      filterSubject: `${ns}meshwork.legacy.v1.OrderChanged`,
      registry: createRegistry(file_meshwork_legacy_v1_events),
      handlers: { "meshwork.legacy.v1.OrderChanged": onLegacyOrderChanged(logger) },
    },
  );
  await consumer.start();
  return consumer;
}

/** The executor of the placement saga (`SAGA_*`). */
function placementExecutor(
  config: Config,
  database: DatabaseHandle<OrdersSchema>,
  saga: SagaDefinition<PlacementData>,
  logger: Logger,
  telemetry: Telemetry,
): SagaExecutor {
  return createSagaExecutor({
    database,
    table: sagas,
    definitions: [saga],
    logger,
    tracer: telemetry.tracer,
    meter: telemetry.meter,
    leaseMs: config.saga.leaseMs,
    pollMs: config.saga.pollMs,
    batchSize: config.saga.concurrency,
  });
}

/** A part `prepare` makes; a call before start-up finished fails. */
function ready<T>(v: T | undefined): T {
  if (v === undefined) throw new Error("orders used before start-up finished");
  return v;
}

/** What `prepare` starts, and `onShutdown` stops in reverse. */
interface OrdersParts {
  saga?: SagaDefinition<PlacementData>;
  executor?: SagaExecutor;
  publisher?: OutboxPublisher;
  unlisten?: () => Promise<void>;
  products?: Cache<Product>;
  feed?: InvalidationFeed;
  catalogue?: ReturnType<typeof createCatalogue>;
  legacySync?: EventConsumer;
}

/**
 * Start-up once the database is migrated: clients of inventory and payments, the placement saga,
 * WatchOrder's status feed, the outbox relay, the price cache, and the saga executor.
 */
async function prepareOrders(
  parts: OrdersParts,
  deps: {
    config: Config;
    database: DatabaseHandle<OrdersSchema>;
    discovery: Discovery;
    service: Service;
    orders: ReturnType<typeof createOrderStore>;
    watch: OrderWatch;
    metrics: ReturnType<typeof createOrderMetrics>;
    logger: Logger;
    telemetry: Telemetry;
  },
): Promise<void> {
  const { config, database, discovery, service, orders, watch, metrics, logger, telemetry } = deps;
  const { inventory, payments } = await upstreamClients(config, discovery, service, logger, telemetry);
  parts.saga = placementSaga({
    inventory,
    payments,
    orders,
    retry: config.saga.retry,
    stepTimeoutMs: config.saga.stepTimeoutMs,
    metrics,
  });
  parts.unlisten = await database.listen(
    STATUS_CHANNEL,
    (payload) => watch.deliver(payload),
    () => watch.resync(),
  );
  parts.publisher = await startOrdersOutbox(config, database, logger, telemetry);
  parts.legacySync = await startLegacyOrderSync(config, parts.publisher.nc, database, logger, telemetry);
  const priceCache = await openPriceCache(config, parts.publisher.nc, SERVICE, telemetry, logger);
  parts.products = priceCache?.products;
  parts.feed = priceCache?.feed;
  if (parts.feed)
    await Promise.race([parts.feed.attached, new Promise((r) => setTimeout(r, 10_000).unref())]);
  parts.catalogue = createCatalogue(() => inventory, parts.products);
  parts.executor = placementExecutor(config, database, parts.saga, logger, telemetry);
  await parts.executor.start();
}

/** Stops what {@link prepareOrders} started, the executor first. */
async function stopOrders(parts: OrdersParts): Promise<void> {
  await parts.executor?.stop();
  await parts.legacySync?.stop();
  await parts.feed?.stop();
  await parts.products?.close();
  await parts.publisher?.stop();
  await parts.unlisten?.();
}
