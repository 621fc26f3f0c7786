import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createTelemetry } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase, uniqueName, waitForLockWaiter } from "@meshwork/testing";
import { SpanKind } from "@opentelemetry/api";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config.js";
import { createInventoryStore, type InventoryStore } from "./inventory-store.js";
import { type InventorySchema, outbox, products, reservationItems, reservations, schema } from "./schema.js";

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

  it("holds every item in two statements besides StockChanged's outbox row, and still all or none", async () => {
    const [a, b] = await Promise.all([product(5), product(5)]);
    if (!a || !b) throw new Error("no products");
    statements.length = 0;
    const id = randomUUID();
    const r = await store.reserve(id, [
      { productId: b.id, quantity: 2 },
      { productId: a.id, quantity: 1 },
    ]);
    // Was: the reservation, an UPDATE per item, the items, the outbox (5 statements for 2 items).
    // Now: the reservation and the locks, then the holds and the items, then the outbox.
    expect(statements.filter((s) => s.kind === SpanKind.CLIENT).map((s) => s.name)).toEqual([
      "WITH",
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

  /** Two products, in id order (the order reserve locks them in). */
  async function twoProducts(onHand: number) {
    const ps = await Promise.all([product(onHand), product(onHand)]);
    const [lo, hi] = ps.map((p) => p.id).sort();
    if (!lo || !hi) throw new Error("no products");
    return { lo, hi };
  }

  /** Resolves when a statement of this database waits for a lock. */
  const someoneWaits = () => waitForLockWaiter(testDb, "a statement waiting for a lock");

  /** Runs `hold` in a transaction that stays open until the returned `finish` is called. */
  async function heldOpen(
    hold: (tx: Parameters<Parameters<typeof database.db.transaction>[0]>[0]) => Promise<unknown>,
  ) {
    let finish!: (commit: boolean) => void;
    const gate = new Promise<boolean>((r) => {
      finish = r;
    });
    let holding!: () => void;
    const held = new Promise<void>((r) => {
      holding = r;
    });
    const done = database.db
      .transaction(async (tx) => {
        await hold(tx);
        holding();
        if (!(await gate)) throw new Error("rolled back on purpose");
      })
      .catch((e: unknown) => e);
    await held;
    return { finish, done };
  }

  it("sees units a release freed while it waited for a lock (the stock test runs after the locks)", async () => {
    const { lo, hi } = await twoProducts(5);
    const first = randomUUID();
    await store.reserve(first, [{ productId: hi, quantity: 5 }]); // hi: nothing free
    // Another transaction holds lo's lock: the reservation waits for it, before it locks hi.
    const holder = await heldOpen((tx) =>
      tx.execute(sql`select id from ${products} where id = ${lo} for update`),
    );
    const id = randomUUID();
    const reserving = store.reserve(id, [
      { productId: lo, quantity: 1 },
      { productId: hi, quantity: 2 },
    ]);
    await someoneWaits();
    await store.release(first); // frees hi's 5 units, commits
    holder.finish(true);
    await holder.done;
    // Was: InsufficientStockError "requested 2, available 5" (the stock test read hi as of the
    // statement's start, before the wait).
    expect(await reserving).toMatchObject({ id, state: "held" });
    expect((await store.getProduct(lo)).reserved).toBe(1);
    expect((await store.getProduct(hi)).reserved).toBe(2);
  });

  it("a same-id call that waited for a first attempt that rolled back sees what committed meanwhile", async () => {
    const { hi } = await twoProducts(5);
    const first = randomUUID();
    await store.reserve(first, [{ productId: hi, quantity: 5 }]);
    const id = randomUUID();
    // A first attempt with this id, still open: the second call waits on its reservation row.
    const attempt = await heldOpen((tx) => tx.insert(reservations).values({ id, state: "held" }));
    const reserving = store.reserve(id, [{ productId: hi, quantity: 2 }]);
    await someoneWaits();
    await store.release(first);
    attempt.finish(false);
    expect(await attempt.done).toMatchObject({ message: "rolled back on purpose" });
    expect(await reserving).toMatchObject({ id, state: "held" });
    expect((await store.getProduct(hi)).reserved).toBe(2);
  });

  it("takes product ids in any case: holds, and catches mixed-case duplicates", async () => {
    const { lo, hi } = await twoProducts(5);
    const id = randomUUID();
    const r = await store.reserve(id, [
      { productId: hi.toUpperCase(), quantity: 2 },
      { productId: lo, quantity: 1 },
    ]);
    expect(r.items).toEqual([
      { productId: lo, quantity: 1 },
      { productId: hi, quantity: 2 },
    ]);
    expect((await store.getProduct(hi)).reserved).toBe(2);
    // The same request again, in another case: the same reservation.
    expect(
      (
        await store.reserve(id, [
          { productId: hi, quantity: 2 },
          { productId: lo.toUpperCase(), quantity: 1 },
        ])
      ).items,
    ).toEqual(r.items);
    await expect(
      store.reserve(randomUUID(), [
        { productId: lo, quantity: 1 },
        { productId: lo.toUpperCase(), quantity: 1 },
      ]),
    ).rejects.toMatchObject({ name: "DuplicateItemError" });
  });
});
