import { fileURLToPath } from "node:url";
import { fromBinary } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import {
  type Cache,
  createCache,
  type InvalidationFeed,
  openSharedTier,
  startInvalidationFeed,
} from "@meshwork/cache";
import { ProductUpdatedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import {
  InventoryService,
  type Product,
  ProductSchema,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { file_meshwork_orders_v1_orders, OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import { eventSubject, meshStreams, type OutboxPublisher, startOutboxPublisher } from "@meshwork/events";
import { createUpstreamPolicy } from "@meshwork/resilience";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import {
  createSagaExecutor,
  createSagaQueries,
  type SagaDefinition,
  type SagaExecutor,
} from "@meshwork/saga";
import { createLogger, createTelemetry, type Logger, type Telemetry } from "@meshwork/telemetry";
import { createCatalogue, priceList } from "./adapters/catalogue.js";
import { createOrderStore, orderRepository, STATUS_CHANNEL } from "./adapters/db/order-store.js";
import { outbox, sagas, schema } from "./adapters/db/schema.js";
import { createOrderMetrics } from "./app/order-metrics.js";
import { OrderWatch } from "./app/order-watch.js";
import { placementSaga } from "./app/placement-saga.js";
import { WatchLimit } from "./app/watch-limit.js";
import type { Config } from "./config.js";
import type { PlacementData } from "./domain/order.js";
import { createOrderServiceHandlers } from "./ports/rpc/order-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
const SERVICE = "orders";

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
  const telemetry =
    observe.telemetry ??
    createTelemetry({
      serviceName: SERVICE,
      serviceVersion: VERSION,
      tracesExporter: config.runtime.tracesExporter,
      otlpEndpoint: config.runtime.otlpEndpoint,
      sampleRatio: config.runtime.sampleRatio,
    });
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
  let inventory: Client<typeof InventoryService> | undefined;
  let payments: Client<typeof PaymentService> | undefined;
  let saga: SagaDefinition<PlacementData> | undefined;
  let executor: SagaExecutor | undefined;
  let publisher: OutboxPublisher | undefined;
  let unlisten: (() => Promise<void>) | undefined;
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
  let products: Cache<Product> | undefined;
  let feed: InvalidationFeed | undefined;
  // Placement reads prices through `catalogue`, built once the cache's shared tier is open.
  let catalogue: ReturnType<typeof createCatalogue> | undefined;
  const prices = priceList({ price: (id) => ready(catalogue).price(id) });
  const metrics = createOrderMetrics(telemetry.meter);
  // Counted when the placement's transaction committed (the function returned runs then).
  const repository = orderRepository(orders, async (tx, instance) => {
    const run = await ready(executor).startIn(tx, ready(saga), instance);
    return () => {
      metrics.placed(instance.data);
      run();
    };
  });
  const ready = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error("orders used before start-up finished");
    return v;
  };

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
          kick: () => executor?.kick(),
          watch: () => watch,
          watchLimit,
          sagas: () => sagaQueries,
          sagaSteps: () => ready(saga).steps.map((s) => s.name),
        }),
      );
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, telemetry.meter);
      inventory = createClient(
        InventoryService,
        await discovery.transport("inventory", {
          // The saga calls as the orders service itself (role `service`), signed with its own key.
          interceptors: [policy("inventory").interceptor, ...service.identity.callsTo("inventory")],
        }),
      );
      payments = createClient(
        PaymentService,
        await discovery.transport("payments", {
          interceptors: [policy("payments").interceptor, ...service.identity.callsTo("payments")],
        }),
      );
      saga = placementSaga({
        inventory,
        payments,
        orders,
        retry: config.saga.retry,
        stepTimeoutMs: config.saga.stepTimeoutMs,
        metrics,
      });
      unlisten = await database.listen(
        STATUS_CHANNEL,
        (payload) => watch.deliver(payload),
        () => watch.resync(),
      );
      publisher = await startOutboxPublisher({
        service: SERVICE,
        config: config.events,
        stream: meshStreams.orders(config.events.namespace, { replicas: config.events.streamReplicas }),
        database,
        table: outbox,
        logger: logger,
        tracer: telemetry.tracer,
        meter: telemetry.meter,
      });
      if (config.catalogue.ttlMs > 0) {
        products = createCache({
          name: "products",
          schema: ProductSchema,
          version: (p) => Number(p.version),
          ttlMs: config.catalogue.ttlMs,
          negativeTtlMs: config.cache.negativeTtlMs,
          local: { maxEntries: config.catalogue.max, maxBytes: config.cache.maxBytes },
          shared: await openSharedTier(config.cache, {
            nc: publisher.nc,
            namespace: config.events.namespace,
            service: SERVICE,
          }),
          sharedTimeoutMs: config.cache.sharedTimeoutMs,
          meter: telemetry.meter,
          logger,
        });
        const cache = products;
        // Every instance follows inventory's price changes on its own ordered consumer.
        const inventoryStream = meshStreams.inventory(config.events.namespace);
        feed = startInvalidationFeed({
          nc: publisher.nc,
          stream: inventoryStream.name,
          filterSubject: eventSubject(config.events.namespace, ProductUpdatedSchema.typeName),
          logger,
          onEvent: async (e) => {
            const ev = fromBinary(ProductUpdatedSchema, e.data);
            await cache.invalidate(ev.productId, Number(ev.version));
            // Price changes are rare admin actions: one line each says when this instance applied it.
            logger.info(
              { product_id: ev.productId, version: Number(ev.version) },
              "product change applied to the price cache",
            );
          },
        });
        await Promise.race([feed.attached, new Promise((r) => setTimeout(r, 10_000).unref())]);
      }
      catalogue = createCatalogue(() => ready(inventory), products);
      executor = createSagaExecutor({
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
      await executor.start();
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      await executor?.stop();
      await feed?.stop();
      await products?.close();
      await publisher?.stop();
      await unlisten?.();
      await discovery.close();
      await database.close();
    },
  });
  return service;
}
