import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { file_meshwork_orders_v1_orders, OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createService, type Service } from "@meshwork/runtime";
import { testIdentity, testRuntimeConfig } from "@meshwork/runtime/testing";
import { type SagaDefinition, startSaga } from "@meshwork/saga";
import { createTestDatabase, type TestDatabase, waitFor } from "@meshwork/testing";
import { sql } from "drizzle-orm";
import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOrderStore, orderRepository, type StartPlacement } from "../../adapters/db/order-store.js";
import { type OrdersSchema, sagas, schema } from "../../adapters/db/schema.js";
import { OrderWatch } from "../../app/order-watch.js";
import { WatchLimit } from "../../app/watch-limit.js";
import type { PlacementData } from "../../domain/order.js";
import { createOrderServiceHandlers } from "./order-service.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const identity = testIdentity(["gateway"]);
const migrations = fileURLToPath(new URL("../../../drizzle", import.meta.url));
const saga = { type: "order-placement", steps: [] } as unknown as SagaDefinition<PlacementData>;
const startPlacement: StartPlacement = async (tx, instance) => {
  await startSaga(tx, sagas, saga, instance);
  return undefined;
};
const PER_USER = 16;
const ATTEMPTS = 500;
/** The stated bound (README): heap growth of the service while one user tries 500 watches. */
const HEAP_GROWTH_BOUND_MB = 16;

function heapMb(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

describe("WatchOrder streams per user (issue 25.2)", () => {
  let testDb: TestDatabase;
  let handle: DatabaseHandle<OrdersSchema>;
  let service: Service;
  let url: string;
  const alice = randomUUID();
  const bob = randomUUID();
  const orderOf: Record<string, string> = {};

  beforeAll(async () => {
    testDb = await createTestDatabase("mw_owatch");
    handle = await openDatabase(
      {
        url: testDb.url,
        dataDir: "unused",
        // Generous idle and connect bounds: the 16 watches below open the pool's connections at
        // once, and on a loaded CI machine (load 20+) a 5 s connect timed out (CONNECT_TIMEOUT,
        // answered INTERNAL here, where the test's service has no connection-error mapping).
        pool: { max: 3, idleTimeoutS: 120, maxLifetimeS: 600, connectTimeoutS: 60 },
      },
      schema,
    );
    await handle.migrate(migrations);
    const store = createOrderStore(handle.db, "t.");
    for (const user of [alice, bob]) {
      const { order } = await store.place(
        {
          id: uuidv7(),
          userId: user,
          idempotencyKey: randomUUID(),
          requestHash: "h",
          items: [{ productId: randomUUID(), quantity: 1, unitPriceMinor: 500 }],
          totalMinor: 500,
          currency: "EUR",
        },
        startPlacement,
      );
      orderOf[user] = order.id;
    }
    const repository = orderRepository(store, startPlacement);
    const watch = new OrderWatch();
    service = createService({
      name: "orders",
      // Trusts the test's gateway key: callers arrive as the gateway's signed assertion.
      config: testRuntimeConfig({ identity: identity.config() }),
      files: [file_meshwork_orders_v1_orders],
      services: [OrderService],
      routes(router) {
        router.service(
          OrderService,
          createOrderServiceHandlers({
            orders: () => repository,
            catalogue: () => {
              throw new Error("not used");
            },
            kick: () => {},
            watch: () => watch,
            watchLimit: new WatchLimit(PER_USER),
            sagas: () => {
              throw new Error("not used");
            },
            sagaSteps: () => [],
          }),
        );
      },
    });
    ({ url } = await service.start());
  }, 60_000);
  afterAll(async () => {
    await service?.shutdown();
    await handle?.close();
    await testDb?.drop();
  });

  it(`holds ${PER_USER} per user, refuses the rest with RESOURCE_EXHAUSTED, serves other users, heap bounded`, async () => {
    const orders = createClient(OrderService, createGrpcTransport({ baseUrl: url }));
    const as = (user: string) => ({ headers: identity.headers("orders", user), signal: abort.signal });
    const abort = new AbortController();
    /** Opens a watch; resolves with "open" at its first message (the stream stays open), or the code. */
    const open = (user: string, signal = abort.signal): Promise<string> => {
      const iterator = orders
        .watchOrder({ id: orderOf[user] }, { ...as(user), signal })
        [Symbol.asyncIterator]();
      return iterator.next().then(
        (r) => (r.done ? "ended" : "open"),
        (e: unknown) => {
          const err = ConnectError.from(e);
          return err.code === Code.ResourceExhausted && err.rawMessage.includes(`limit ${PER_USER}`)
            ? "ResourceExhausted"
            : `${Code[err.code] ?? "?"}: ${err.rawMessage}`; // a failure names what the stream said
        },
      );
    };
    try {
      // Every pooled connection open before the heap baseline and the burst (three reads at once
      // need three): no Postgres handshake has to compete with 500 streams in this process.
      await Promise.all(Array.from({ length: 3 }, () => handle.db.execute(sql`select pg_sleep(0.1)`)));
      const before = heapMb();
      const outcomes = await Promise.all(Array.from({ length: ATTEMPTS }, () => open(alice)));
      const growth = heapMb() - before;
      const counts = outcomes.reduce<Record<string, number>>((acc, o) => {
        acc[o] = (acc[o] ?? 0) + 1;
        return acc;
      }, {});
      expect(counts).toEqual({ open: PER_USER, ResourceExhausted: ATTEMPTS - PER_USER });
      expect(growth).toBeLessThan(HEAP_GROWTH_BOUND_MB);
      console.log(`${ATTEMPTS} WatchOrder attempts from one user: heap growth ${growth.toFixed(1)} MB`);
      // Another user is served meanwhile.
      expect(await open(bob)).toBe("open");
      // A watch that ends gives its place back.
      const one = new AbortController();
      await waitFor(async () => (await open(alice, one.signal)) === "ResourceExhausted", {
        what: "still full",
      });
      abort.abort(); // alice's (and bob's) open watches end
      await waitFor(async () => (await open(alice, one.signal)) === "open", { what: "a place given back" });
      one.abort();
    } finally {
      abort.abort();
    }
  }, 120_000); // 12 s quiet, 36 s seen at load 21: 500 streams from one process
});
