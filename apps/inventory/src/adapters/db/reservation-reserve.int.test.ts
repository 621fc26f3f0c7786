import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createTelemetry } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase, uniqueName } from "@meshwork/testing";
import { SpanKind } from "@opentelemetry/api";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config.js";
import { createInventoryStore, type InventoryStore } from "./inventory-store.js";
import { type InventorySchema, outbox, reservationItems, schema } from "./schema.js";

const migrations = fileURLToPath(new URL("../../../drizzle", import.meta.url));

describe("a reservation's statements on the real Postgres", () => {
  let testDb: TestDatabase;
  let database: DatabaseHandle<InventorySchema>;
  let store: InventoryStore;
  /** The statements (CLIENT spans, one per statement the database handle runs) since the last reset. */
  const statements: Array<{ name: string; kind: SpanKind }> = [];
  const telemetry = createTelemetry({
    serviceName: "inventory-reserve-test",
    spanProcessors: [
      {
        onStart: () => {},
        onEnd: (s) => statements.push({ name: s.name, kind: s.kind }),
        forceFlush: async () => {},
        shutdown: async () => {},
      },
    ],
  });

  beforeAll(async () => {
    testDb = await createTestDatabase("inv_reserve");
    const config = loadConfig({ DATABASE_URL: testDb.url, EVENTS_NAMESPACE: `${uniqueName("t")}.` });
    database = await openDatabase(config.db, schema, { telemetry });
    await database.migrate(migrations);
    store = createInventoryStore(database.db, { namespace: "t." });
  });
  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
    await telemetry.shutdown();
  });

  const product = (onHand: number) =>
    store.createProduct({
      id: randomUUID(),
      sku: `SKU-${randomUUID()}`,
      name: "p",
      priceMinor: 100,
      currency: "EUR",
      onHand,
    });

  it("holds every item in one statement besides StockChanged's outbox row, and still all or none", async () => {
    const [a, b] = await Promise.all([product(5), product(5)]);
    if (!a || !b) throw new Error("no products");
    statements.length = 0;
    const id = randomUUID();
    const r = await store.reserve(id, [
      { productId: b.id, quantity: 2 },
      { productId: a.id, quantity: 1 },
    ]);
    // Was: the reservation, an UPDATE per item, the items, the outbox (5 statements for 2 items).
    expect(statements.filter((s) => s.kind === SpanKind.CLIENT).map((s) => s.name)).toEqual([
      "WITH",
      "INSERT outbox",
    ]);
    expect(r).toMatchObject({ id, state: "held" });
    expect(r.items.map((i) => i.productId)).toEqual([a.id, b.id].sort());
    expect((await store.getProduct(a.id)).reserved).toBe(1);
    expect((await store.getProduct(b.id)).reserved).toBe(2);
    const events = await database.db.select().from(outbox);
    expect(events.filter((e) => e.type.endsWith("StockChanged"))).toHaveLength(2);

    // The same id again: the reservation as it is, nothing held twice.
    expect(
      (
        await store.reserve(id, [
          { productId: a.id, quantity: 1 },
          { productId: b.id, quantity: 2 },
        ])
      ).items,
    ).toEqual(r.items);
    expect((await store.getProduct(a.id)).reserved).toBe(1);

    // One item short: nothing held, no items, no reservation (the statement's other parts roll back).
    const short = randomUUID();
    await expect(
      store.reserve(short, [
        { productId: a.id, quantity: 1 },
        { productId: b.id, quantity: 4 },
      ]),
    ).rejects.toMatchObject({ name: "InsufficientStockError" });
    expect((await store.getProduct(a.id)).reserved).toBe(1);
    expect(
      await database.db.select().from(reservationItems).where(eq(reservationItems.reservationId, short)),
    ).toEqual([]);
    await expect(store.getReservation(short)).rejects.toMatchObject({ name: "ReservationNotFoundError" });
  });
});
