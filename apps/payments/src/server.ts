import { fileURLToPath } from "node:url";
import {
  file_meshwork_payments_v1_payments,
  PaymentService,
} from "@meshwork/contracts/meshwork/payments/v1/payments";
import { databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import { meshStreams, type OutboxPublisher, startOutboxPublisher } from "@meshwork/events";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import { createLogger, type Logger, type Telemetry } from "@meshwork/telemetry";
import { type HoldSweeper, startHoldSweeper } from "./adapters/db/hold-sweeper.js";
import { createPaymentStore } from "./adapters/db/payment-store.js";
import { createProviderLedger } from "./adapters/db/provider-ledger.js";
import { outbox, schema } from "./adapters/db/schema.js";
import { SimulatedProvider } from "./adapters/provider/simulated-provider.js";
import type { Config } from "./config.js";
import type { PaymentRepository } from "./domain/ports.js";
import { createPaymentServiceHandlers } from "./ports/rpc/payment-service.js";

/** Connections of the provider ledger's own pool (its writes are one short INSERT each). */
export const LEDGER_POOL_MAX = 2;

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
const SERVICE = "payments";

/**
 * Wires the payments service: its database, the simulated provider with the configured fault
 * switch, the PaymentService handlers, the relay that publishes its outbox (PaymentRefunded, which
 * notifications consumes) to the PAYMENTS stream, and its entry in the discovery registry.
 */
export async function createPaymentsService(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
  /**
   * A provider of the caller's (tests look at its holds); by default one with `config.faults`
   * whose ledger is the `provider_ledger` table.
   */
  given?: SimulatedProvider,
): Promise<Service> {
  const database = await openDatabase(config.db, schema);
  // On a Postgres server the provider's entries are written on connections of their own: a
  // payment's transaction holds a pooled connection while it waits for its entry, so writing the
  // entry through the same pool deadlocks once as many payments run at once as the pool has
  // connections (every one waits for a connection none will give back). Seen when a restarted
  // orders resumed its sagas in a burst: payments answered nothing that touched its database.
  const ledgerDatabase = config.db.url
    ? await openDatabase({ ...config.db, pool: { ...config.db.pool, max: LEDGER_POOL_MAX } }, schema)
    : database;
  const ledger = createProviderLedger(database, ledgerDatabase);
  const provider = given ?? new SimulatedProvider(config.faults, Math.random, ledger);
  const logger = observe.logger ?? createLogger({ service: SERVICE, level: config.runtime.logLevel });
  const store = createPaymentStore(database.db, provider, config.events.namespace, (paymentId, err) =>
    logger.warn(
      { payment_id: paymentId, err: String(err) },
      "hold left at the provider for now; the sweeper retries",
    ),
  );
  const discovery = createDiscovery(config.discovery, { service: SERVICE, version: VERSION });
  let publisher: OutboxPublisher | undefined;
  let sweeper: HoldSweeper | undefined;
  let migrated = false;
  const ready = (): PaymentRepository => {
    if (!migrated) throw new Error("payments used before start-up finished");
    return store;
  };
  const service: Service = createService({
    name: SERVICE,
    version: VERSION,
    config: config.runtime,
    files: [file_meshwork_payments_v1_payments],
    services: [PaymentService],
    ...observe,
    logger,
    routes(router) {
      router.service(PaymentService, createPaymentServiceHandlers(ready, provider, logger));
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, service.telemetry.meter);
      await ledger.load();
      migrated = true;
      publisher = await startOutboxPublisher({
        service: SERVICE,
        config: config.events,
        stream: meshStreams.payments(config.events.namespace, { replicas: config.events.streamReplicas }),
        database,
        table: outbox,
        logger: logger,
        tracer: service.telemetry.tracer,
        meter: service.telemetry.meter,
      });
      sweeper = startHoldSweeper(store, config.holdSweepMs, logger, service.telemetry.meter);
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      await discovery.close();
      await sweeper?.stop();
      await publisher?.stop();
      await ledger.flush();
      if (ledgerDatabase !== database) await ledgerDatabase.close();
      await database.close();
    },
  });
  return service;
}
