import { fileURLToPath } from "node:url";
import {
  file_meshwork_inventory_v1_inventory,
  InventoryService,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import { createLogger, type Logger, type Telemetry } from "@meshwork/telemetry";
import { createInventoryStore } from "./adapters/db/inventory-store.js";
import { schema } from "./adapters/db/schema.js";
import type { Config } from "./config.js";
import type { InventoryRepository } from "./domain/ports.js";
import { createInventoryServiceHandlers } from "./ports/rpc/inventory-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
const SERVICE = "inventory";

/**
 * Wires the inventory service: its database (migrated before it reports SERVING), the
 * InventoryService handlers over the stock store, and its entry in the discovery registry.
 * No other service consumes an inventory event yet, so it has no outbox (see the README).
 */
export async function createInventoryService(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
): Promise<Service> {
  const database = await openDatabase(config.db, schema);
  const store = createInventoryStore(database.db);
  const discovery = createDiscovery(config.discovery, { service: SERVICE, version: VERSION });
  const logger = observe.logger ?? createLogger({ service: SERVICE, level: config.runtime.logLevel });
  let migrated = false;
  const ready = (): InventoryRepository => {
    if (!migrated) throw new Error("inventory used before start-up finished");
    return store;
  };
  const service: Service = createService({
    name: SERVICE,
    version: VERSION,
    config: config.runtime,
    files: [file_meshwork_inventory_v1_inventory],
    services: [InventoryService],
    ...observe,
    logger,
    routes(router) {
      router.service(InventoryService, createInventoryServiceHandlers(ready, logger));
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, service.telemetry.meter);
      migrated = true;
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      await discovery.close();
      await database.close();
    },
  });
  return service;
}
