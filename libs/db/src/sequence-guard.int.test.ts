import { randomUUID } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { bigint, pgTable, timestamp, uuid } from "drizzle-orm/pg-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DriverDatabase, openDriverDatabase } from "../test/driver-database.js";
import type { DatabaseHandle } from "./database.js";
import { claimSequence } from "./sequence-guard.js";

// A service's own guard table, as inventory's legacy_sync or orders' legacy_order_sync declare it.
const itemSync = pgTable("item_sync", {
  itemId: uuid("item_id").primaryKey(),
  sequence: bigint("sequence", { mode: "number" }).notNull(),
  appliedAt: timestamp("applied_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});
const schema = { itemSync };

describe.each(["pglite", "postgres"] as const)("claimSequence on %s", (driver) => {
  let opened: DriverDatabase<typeof schema>;
  let handle: DatabaseHandle<typeof schema>;

  beforeAll(async () => {
    opened = await openDriverDatabase(driver, "mw_seqguard", schema);
    handle = opened.handle;
    await handle.db.execute(sql`create table item_sync (
      item_id uuid primary key, sequence bigint not null, applied_at timestamptz not null default now())`);
  });
  afterAll(() => opened?.close());

  const claim = (id: string, sequence: number) =>
    handle.db.transaction((tx) => claimSequence(tx, itemSync, itemSync.itemId, id, sequence));
  const mark = async (id: string) =>
    (await handle.db.select().from(itemSync).where(eq(itemSync.itemId, id)))[0];

  it("claims a newer capture, refuses a repeated or older one without touching the mark", async () => {
    const id = randomUUID();
    expect(await claim(id, 5)).toBe(true);
    const first = await mark(id);
    expect(first?.sequence).toBe(5);
    expect(await claim(id, 5)).toBe(false);
    expect(await claim(id, 4)).toBe(false);
    expect(await mark(id)).toEqual(first);
    expect(await claim(id, 7)).toBe(true);
    const second = await mark(id);
    expect(second?.sequence).toBe(7);
    expect(second?.appliedAt.getTime()).toBeGreaterThanOrEqual(first?.appliedAt.getTime() ?? Infinity);
  });

  it("keeps one mark per entity: another entity's lower sequence is its own first", async () => {
    const a = randomUUID();
    const b = randomUUID();
    expect(await claim(a, 100)).toBe(true);
    expect(await claim(b, 1)).toBe(true);
    expect((await mark(a))?.sequence).toBe(100);
    expect((await mark(b))?.sequence).toBe(1);
  });

  it("lets exactly one of simultaneous claims of the same capture through", async () => {
    const id = randomUUID();
    const claims = await Promise.all(Array.from({ length: 4 }, () => claim(id, 9)));
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect((await mark(id))?.sequence).toBe(9);
  });
});
