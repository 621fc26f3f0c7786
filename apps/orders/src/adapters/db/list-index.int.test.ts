import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestStore, type TestStore } from "../../../test/harness.js";
import { listQuery } from "./order-store.js";

/** A plan node of `EXPLAIN (FORMAT JSON)`, as far as these checks read it. */
interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Scan Direction"?: string;
  Plans?: PlanNode[];
}

const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];

describe("ListOrders pages come from an index, never from sorting the orders table (real Postgres)", () => {
  let t: TestStore;
  const alice = randomUUID();

  beforeAll(async () => {
    t = await openTestStore("mw_orders_listidx");
    // 20,000 orders of 200 users over a year: enough that a sort of the table is the costly plan.
    await t.handle.db.execute(sql`
      INSERT INTO orders (id, user_id, idempotency_key, request_hash, items, total_minor, currency, status, created_at, updated_at)
      SELECT gen_random_uuid(),
             CASE WHEN i % 200 = 0 THEN ${alice}::uuid ELSE md5('u' || (i % 200))::uuid END,
             'k' || i, 'h', '[]'::jsonb, 100, 'EUR', 'confirmed',
             now() - make_interval(mins => i * 26), now()
      FROM generate_series(1, 20000) AS i`);
    await t.handle.db.execute(sql`ANALYZE orders`);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
  });

  const planOf = async (userId: string | undefined, beforeId: string | undefined) => {
    const query = listQuery(t.handle.db, userId, beforeId, 20);
    const rows = (await t.handle.db.execute(sql`EXPLAIN (FORMAT JSON) ${query}`)) as unknown as Array<{
      "QUERY PLAN": Array<{ Plan: PlanNode }>;
    }>;
    return nodes(rows[0]?.["QUERY PLAN"][0]?.Plan as PlanNode);
  };

  it("every user's orders (the admin's list), first page and a later one, read orders_created_idx backwards", async () => {
    const [middle] = (await t.handle.db.execute(
      sql`SELECT id FROM orders ORDER BY created_at DESC, id DESC OFFSET 5000 LIMIT 1`,
    )) as unknown as Array<{ id: string }>;
    for (const before of [undefined, middle?.id]) {
      const plan = await planOf(undefined, before);
      expect(plan.map((n) => n["Node Type"])).not.toContain("Sort");
      expect(plan.find((n) => n["Index Name"] === "orders_created_idx")).toMatchObject({
        "Scan Direction": "Backward",
      });
    }
  });

  it("one user's orders read orders_user_created_idx backwards", async () => {
    const plan = await planOf(alice, undefined);
    expect(plan.map((n) => n["Node Type"])).not.toContain("Sort");
    expect(plan.find((n) => n["Index Name"] === "orders_user_created_idx")).toMatchObject({
      "Scan Direction": "Backward",
    });
  });

  it("answers the pages in order, each continuing where the last stopped", async () => {
    const first = await listQuery(t.handle.db, undefined, undefined, 3);
    const second = await listQuery(t.handle.db, undefined, first.at(-1)?.id, 3);
    const all = [...first, ...second];
    expect(all).toHaveLength(6);
    for (let i = 1; i < all.length; i++)
      expect((all[i - 1]?.createdAt.getTime() ?? 0) >= (all[i]?.createdAt.getTime() ?? 0)).toBe(true);
    expect(new Set(all.map((o) => o.id)).size).toBe(6);
  });
});
