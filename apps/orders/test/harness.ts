import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { file_meshwork_orders_v1_orders, OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { type DatabaseConfig, type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createService, type RuntimeConfig, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { type SagaDefinition, startSaga } from "@meshwork/saga";
import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import { v7 as uuidv7 } from "uuid";
import { createOrderStore, type OrderStore, type StartPlacement } from "../src/adapters/db/order-store.js";
import { type OrdersSchema, sagas, schema } from "../src/adapters/db/schema.js";
import { OrderWatch } from "../src/app/order-watch.js";
import { WatchLimit } from "../src/app/watch-limit.js";
import type { PlacementData } from "../src/domain/order.js";
import { createOrderServiceHandlers, type OrderHandlerDeps } from "../src/ports/rpc/order-service.js";

const migrations = fileURLToPath(new URL("../drizzle", import.meta.url));

/** One suite's orders database: fresh, migrated, with the store on it; `close()` drops it. */
export interface TestStore {
  testDb: TestDatabase;
  handle: DatabaseHandle<OrdersSchema>;
  /** The order store, in events namespace `t.`. */
  store: OrderStore;
  close(): Promise<void>;
}

/**
 * Creates a uniquely named database (`<prefix>_<hex>`) on the real Postgres, applies the orders
 * migrations and opens the store on it. `pool` overrides the small default pool (3 connections).
 */
export async function openTestStore(
  prefix: string,
  pool: Partial<DatabaseConfig["pool"]> = {},
): Promise<TestStore> {
  const testDb = await createTestDatabase(prefix);
  const handle = await openDatabase(
    {
      url: testDb.url,
      dataDir: "unused",
      pool: { max: 3, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5, ...pool },
    },
    schema,
  );
  await handle.migrate(migrations);
  return {
    testDb,
    handle,
    store: createOrderStore(handle.db, "t."),
    async close() {
      await handle.close();
      await testDb.drop();
    },
  };
}

/** Only its type is stored with the saga row. */
const standInSaga = { type: "order-placement", steps: [] } as unknown as SagaDefinition<PlacementData>;

/** Starts the placement saga's row with no steps to run: for tests of the store, not of the saga. */
export const startPlacementRow: StartPlacement = async (tx, instance) => {
  await startSaga(tx, sagas, standInSaga, instance);
  return undefined;
};

/** Places a one-item order (500 EUR cents) for `userId`; returns its id. */
export async function placeTestOrder(
  store: OrderStore,
  userId: string,
  startPlacement: StartPlacement = startPlacementRow,
): Promise<string> {
  const { order } = await store.place(
    {
      id: uuidv7(),
      userId,
      idempotencyKey: randomUUID(),
      requestHash: "h",
      items: [{ productId: randomUUID(), quantity: 1, unitPriceMinor: 500 }],
      totalMinor: 500,
      currency: "EUR",
    },
    startPlacement,
  );
  return order.id;
}

const notUsed = () => {
  throw new Error("not used by this test");
};

/**
 * Serves OrderService alone (port 0) with the handlers' `deps`: the order repository, and what
 * the test needs besides; the rest answers "not used by this test" (no catalogue, no sagas).
 * `identity` is the caller identity config (`testIdentity(...).config()`).
 */
export async function startTestOrderService(
  identity: RuntimeConfig["identity"],
  deps: Pick<OrderHandlerDeps, "orders"> & Partial<OrderHandlerDeps>,
): Promise<{ service: Service; url: string }> {
  const service = createService({
    name: "orders",
    config: testRuntimeConfig({ identity }),
    files: [file_meshwork_orders_v1_orders],
    services: [OrderService],
    routes(router) {
      router.service(
        OrderService,
        createOrderServiceHandlers({
          catalogue: notUsed,
          kick: () => {},
          watch: () => new OrderWatch(),
          watchLimit: new WatchLimit(4),
          sagas: notUsed,
          sagaSteps: () => [],
          ...deps,
        }),
      );
    },
  });
  const { url } = await service.start();
  return { service, url };
}
