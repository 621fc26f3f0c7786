import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { ProductChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createTestDatabase, type TestDatabase, uniqueName, waitFor } from "@meshwork/testing";
import { eq } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config.js";
import { createInventoryStore, type InventoryStore } from "./inventory-store.js";
import { applyLegacyProduct } from "./legacy-sync.js";
import { type InventorySchema, legacySync, products, schema } from "./schema.js";

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
});
