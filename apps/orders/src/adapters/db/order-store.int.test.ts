import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { type SagaDefinition, startSaga } from "@meshwork/saga";
import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import { eq } from "drizzle-orm";
import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrderStateError, type PlacementData } from "../../domain/order.js";
import { createOrderStore, type OrderStore, type StartPlacement } from "./order-store.js";
import { type OrdersSchema, orders, sagas, schema } from "./schema.js";

const migrations = fileURLToPath(new URL("../../../drizzle", import.meta.url));
/** Only its type is stored with the saga row. */
const saga = { type: "order-placement", steps: [] } as unknown as SagaDefinition<PlacementData>;
const startPlacement: StartPlacement = async (tx, instance) => {
  await startSaga(tx, sagas, saga, instance);
  return undefined;
};

describe("order store on Postgres: the checks before each saga step", () => {
  let testDb: TestDatabase;
  let handle: DatabaseHandle<OrdersSchema>;
  let store: OrderStore;
  const user = randomUUID();

  beforeAll(async () => {
    testDb = await createTestDatabase("mw_ostore");
    handle = await openDatabase(
      {
        url: testDb.url,
        dataDir: "unused",
        pool: { max: 3, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 },
      },
      schema,
    );
    await handle.migrate(migrations);
    store = createOrderStore(handle.db, "t.");
  });
  afterAll(async () => {
    await handle?.close();
    await testDb?.drop();
  });

  const place = async () => {
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
    return order.id;
  };
  const before = (id: string, step: string) => handle.db.transaction((tx) => store.beforeStep(tx, id, step));
  const flags = async (id: string) =>
    (
      await handle.db
        .select({ captureStarted: orders.captureStarted, cancelRequested: orders.cancelRequested })
        .from(orders)
        .where(eq(orders.id, id))
    )[0];

  it("lets a step go on, and marks the order as being paid before the capture: no cancelling from then on", async () => {
    const id = await place();
    expect(await before(id, "authorize")).toBeUndefined();
    expect(await flags(id)).toEqual({ captureStarted: false, cancelRequested: false });
    expect(await before(id, "capture")).toBeUndefined();
    expect(await flags(id)).toEqual({ captureStarted: true, cancelRequested: false });
    await expect(store.requestCancel(user, id)).rejects.toThrow(OrderStateError);
    await expect(store.requestCancel(user, id)).rejects.toThrow(/is being paid/);
    // A retried capture step checks again and goes on.
    expect(await before(id, "capture")).toBeUndefined();
  });

  it("stops at the next step once a cancellation was asked for, and never marks it as being paid", async () => {
    const id = await place();
    await store.requestCancel(user, id);
    expect(await before(id, "authorize")).toBe("cancelled by the customer");
    expect(await before(id, "capture")).toBe("cancelled by the customer");
    expect(await flags(id)).toEqual({ captureStarted: false, cancelRequested: true });
  });

  it("says so for an order that does not exist", async () => {
    expect(await before(uuidv7(), "reserve")).toBe("the order no longer exists");
    expect(await before(uuidv7(), "capture")).toBe("the order no longer exists");
  });
});
