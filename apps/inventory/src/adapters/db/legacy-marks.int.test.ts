import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { create, fromBinary } from "@bufbuild/protobuf";
import { StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import { ProductChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createTestDatabase, type TestDatabase, uniqueName, waitFor } from "@meshwork/testing";
import { desc, eq } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config.js";
import { createInventoryStore, type InventoryStore } from "./inventory-store.js";
import { applyLegacyProduct } from "./legacy-sync.js";
import { type InventorySchema, legacySync, outbox, products, schema } from "./schema.js";

const migrations = fileURLToPath(new URL("../../../drizzle", import.meta.url));

describe("legacy marks on the real Postgres (what inventory's writes record for legacy's captures)", () => {
  let testDb: TestDatabase;
  let database: DatabaseHandle<InventorySchema>;
  let store: InventoryStore;
  let holder: postgres.Sql;
  const namespace = `${uniqueName("t")}.`;

  beforeAll(async () => {
    testDb = await createTestDatabase("inv_marks");
    database = await openDatabase(
      loadConfig({ DATABASE_URL: testDb.url, EVENTS_NAMESPACE: namespace }).db,
      schema,
    );
    await database.migrate(migrations);
    store = createInventoryStore(database.db, { namespace });
    holder = postgres(testDb.url, { max: 1, onnotice: () => {} });
  });

  afterAll(async () => {
    await holder?.end();
    await database?.close();
    await testDb?.drop();
  });

  /** Runs `op` while another transaction holds legacy_sync locked; "blocked" if it waits on it. */
  async function whileLegacySyncLocked(op: () => Promise<unknown>): Promise<"done" | "blocked"> {
    let pending: Promise<unknown> | undefined;
    const outcome = await holder.begin(async (sql) => {
      await sql`lock table legacy_sync in access exclusive mode`;
      let finished = false;
      pending = op().then(() => {
        finished = true;
      });
      return waitFor(
        async () => {
          if (finished) return "done" as const;
          const [w] = await sql<{ n: number }[]>`
              select count(*)::int as n from pg_locks where not granted and relation = 'legacy_sync'::regclass`;
          return (w?.n ?? 0) > 0 ? ("blocked" as const) : undefined;
        },
        { what: "the write to finish or to wait on legacy_sync" },
      );
    });
    await pending;
    return outcome;
  }

  const meshProduct = () =>
    store.createProduct({
      id: randomUUID(),
      sku: `MESH-${randomUUID().slice(0, 8)}`,
      name: "Mesh product",
      priceMinor: 100,
      currency: "EUR",
      onHand: 10,
    });

  it("a mesh product's reserve, commit, release and adjustment touch no legacy_sync row", async () => {
    const p = await meshProduct();
    const first = randomUUID();
    const second = randomUUID();
    const ops: [string, () => Promise<unknown>][] = [
      ["reserve", () => store.reserve(first, [{ productId: p.id, quantity: 2 }])],
      ["commit", () => store.commit(first)],
      ["reserve", () => store.reserve(second, [{ productId: p.id, quantity: 1 }])],
      ["release", () => store.release(second)],
      ["adjust", () => store.adjustStock(p.id, 5)],
    ];
    for (const [name, op] of ops) expect([name, await whileLegacySyncLocked(op)]).toEqual([name, "done"]);
    const [row] = await database.db.select().from(products).where(eq(products.id, p.id));
    expect(row).toMatchObject({ onHand: 13, reserved: 0, legacySynced: false });
  });

  const legacyCapture = (
    productId: string,
    sequence: bigint,
    fields: { onHand: bigint; seenStockVersion?: bigint; legacyStockDelta?: bigint },
  ) =>
    create(ProductChangedSchema, {
      productId,
      sequence,
      sku: `LEG-${productId.slice(0, 8)}`,
      name: "Legacy product",
      price: { amountMinor: 500n, currency: "EUR" },
      ...fields,
    });

  const apply = (e: ReturnType<typeof legacyCapture>) =>
    database.db.transaction((tx) => applyLegacyProduct(tx, e, namespace));

  const marks = async (id: string) => {
    const [p] = await database.db.select().from(products).where(eq(products.id, id));
    const [m] = await database.db.select().from(legacySync).where(eq(legacySync.productId, id));
    return { onHand: p?.onHand, version: p?.version, legacySynced: p?.legacySynced, ...m };
  };

  it("a legacy product's writes record their versions; a first capture with a sum but no baseline is taken whole", async () => {
    const id = randomUUID();
    // Created by a capture from before legacy's step 7: no sum, so no baseline.
    expect(await apply(legacyCapture(id, 1n, { onHand: 10n }))).toBe("created");
    expect(await marks(id)).toMatchObject({
      legacySynced: true,
      legacyStockDelta: null,
      meshStockVersion: 0,
    });

    const r = randomUUID();
    await store.reserve(r, [{ productId: id, quantity: 2 }]);
    await store.commit(r);
    const afterCommit = await marks(id);
    expect(afterCommit).toMatchObject({ onHand: 8, version: 3, meshStockVersion: 3 });

    // Legacy's step 7 ran before this side's migration: its sum (4) holds changes this side already
    // took whole. The capture had not seen the mesh's commit (concurrent): taken whole, sum recorded.
    expect(
      await apply(legacyCapture(id, 2n, { onHand: 11n, seenStockVersion: 1n, legacyStockDelta: 4n })),
    ).toBe("updated");
    expect(await marks(id)).toMatchObject({ onHand: 11, legacyStockDelta: 4 });

    // The next concurrent capture merges against that baseline: legacy sold 1 since.
    await apply(legacyCapture(id, 3n, { onHand: 10n, seenStockVersion: 1n, legacyStockDelta: 3n }));
    expect(await marks(id)).toMatchObject({ onHand: 10, legacyStockDelta: 3 });
  });

  /** The last StockChanged this side wrote for `id` (what legacy's reverse sync applies). */
  const lastStockChanged = async (id: string) => {
    const rows = await database.db.select().from(outbox).orderBy(desc(outbox.seq)).limit(20);
    for (const r of rows) {
      if (!r.type.endsWith("StockChanged")) continue;
      const e = fromBinary(StockChangedSchema, r.payload);
      if (e.productId === id) return { onHand: Number(e.onHand), heldBack: Number(e.heldBack ?? 0n) };
    }
    return undefined;
  };

  /** The consistency checker's rule for `id`: on hand = received - committed, reserved = held. */
  const expectConserved = async (id: string) => {
    const a = (await store.audit()).find((x) => x.productId === id);
    expect(a && { onHand: a.onHand, reserved: a.reserved }).toEqual({
      onHand: (a?.received ?? 0) - (a?.committed ?? 0),
      reserved: a?.held,
    });
  };

  /** A legacy product of 5 units with a baseline (sum 0), and reservations of `quantities` held. */
  async function reservedLegacyProduct(quantities: number[]): Promise<{ id: string; holds: string[] }> {
    const id = randomUUID();
    await apply(legacyCapture(id, 1n, { onHand: 5n, seenStockVersion: 0n, legacyStockDelta: 0n }));
    const holds: string[] = [];
    for (const quantity of quantities) {
      const r = randomUUID();
      await store.reserve(r, [{ productId: id, quantity }]);
      holds.push(r);
    }
    return { id, holds };
  }

  it("what legacy sold of reserved units is taken out by the release, with no further capture", async () => {
    const { id, holds } = await reservedLegacyProduct([5]);
    const { version } = await marks(id);
    // Legacy (having applied the reserve's StockChanged) sells 3: inventory stays at 5, 3 held back.
    await apply(
      legacyCapture(id, 2n, { onHand: 2n, seenStockVersion: BigInt(version!), legacyStockDelta: -3n }),
    );
    expect(await marks(id)).toMatchObject({ onHand: 5, legacyHeldBack: 3 });
    await store.release(holds[0]!);
    expect(await marks(id)).toMatchObject({ onHand: 2, legacyHeldBack: 0 });
    expect(await lastStockChanged(id)).toEqual({ onHand: 2, heldBack: 0 });
    const [row] = await database.db.select().from(products).where(eq(products.id, id));
    expect(row).toMatchObject({ reserved: 0, received: 2 });
    await expectConserved(id);
  });

  it("a commit that frees no units sends legacy the count less what it sold of them (never sold twice)", async () => {
    const { id, holds } = await reservedLegacyProduct([3, 2]);
    const { version } = await marks(id);
    await apply(
      legacyCapture(id, 2n, { onHand: 0n, seenStockVersion: BigInt(version!), legacyStockDelta: -5n }),
    );
    expect(await marks(id)).toMatchObject({ onHand: 5, legacyHeldBack: 5 });
    await store.commit(holds[0]!);
    // 2 still reserved: legacy writes 2 - 5 -> 0, not 2 it would sell again.
    expect(await marks(id)).toMatchObject({ onHand: 2, legacyHeldBack: 5 });
    expect(await lastStockChanged(id)).toEqual({ onHand: 2, heldBack: 5 });
    await store.commit(holds[1]!);
    // The answer is the row after the held-back units came out (received: 5 + 8 - 5; 5 committed).
    expect(await store.adjustStock(id, 8)).toMatchObject({ onHand: 3, received: 8 });
    // 5 - 5 (legacy) - 5 (mesh) + 8 = 3 on both sides.
    expect(await marks(id)).toMatchObject({ onHand: 3, legacyHeldBack: 0 });
    expect(await lastStockChanged(id)).toEqual({ onHand: 3, heldBack: 0 });
    await expectConserved(id);
  });
});
