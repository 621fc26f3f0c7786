import { fileURLToPath } from "node:url";
import { createTestDatabase, waitFor } from "@meshwork/testing";
import { eq, sql } from "drizzle-orm";
import { pgTable, serial, text } from "drizzle-orm/pg-core";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DriverDatabase, openDriverDatabase } from "../test/driver-database.js";
import { invalidValueOf, isConnectionError } from "./connection-errors.js";
import {
  createUnitOfWork,
  type DatabaseHandle,
  isUniqueViolation,
  openDatabase,
  type Queryable,
  queryRows,
} from "./database.js";
import { prepareSelect } from "./prepared-select.js";

const items = pgTable("items", { id: serial("id").primaryKey(), name: text("name").notNull().unique() });
const schema = { items };
const migrations = fileURLToPath(new URL("../test/fixtures/migrations", import.meta.url));

const pool = { max: 3, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 };

describe.each(["pglite", "postgres"] as const)("openDatabase on %s", (driver) => {
  let opened: DriverDatabase<typeof schema>;
  let handle: DatabaseHandle<typeof schema>;

  beforeAll(async () => {
    opened = await openDriverDatabase(driver, "mw_db", schema);
    handle = opened.handle;
    await handle.migrate(migrations);
    await handle.migrate(migrations); // idempotent
  });
  afterAll(() => opened?.close());

  it("reports its driver and answers ping", async () => {
    expect(handle.driver).toBe(driver);
    await handle.ping();
  });

  // Issue 25.8: what the client sent and the database refuses is INVALID_ARGUMENT, never INTERNAL.
  it.each([
    ["a NUL byte in text", sql`select ${"a\u0000b"}::text`, /0x00|invalid byte sequence|null character/i],
    ["a number beyond bigint", sql`select ${"9223372036854775808"}::bigint`, /out of range/],
    ["text that is not a uuid", sql`select ${"not-a-uuid"}::uuid`, /invalid input syntax for type uuid/],
  ])("says what was wrong with %s (a data exception, SQLSTATE class 22)", async (_what, query, words) => {
    const err = await handle.db.execute(query).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeDefined();
    const problem = invalidValueOf(err);
    expect(problem).toMatch(/^invalid value: /);
    expect(problem).toMatch(words);
    expect(isConnectionError(err)).toBe(false);
  });

  it("commits a unit of work, and rolls all of it back when it throws", async () => {
    const uow = createUnitOfWork(handle.db);
    await uow.run(async (tx) => {
      await tx.insert(items).values({ name: "a" });
      await tx.insert(items).values({ name: "b" });
    });
    await expect(
      uow.run(async (tx) => {
        await tx.insert(items).values({ name: "c" });
        await tx.insert(items).values({ name: "a" }); // unique violation
      }),
    ).rejects.toSatisfy((err: unknown) => isUniqueViolation(err, "items_name_unique"));
    const names = (await handle.db.select().from(items)).map((r) => r.name).sort();
    expect(names).toEqual(["a", "b"]);
  });

  it("returns a raw statement's rows, a data-modifying CTE's included, as the driver gives them", async () => {
    const rows = await queryRows<{ name: string; at: string; n: string | number }>(
      handle.db,
      sql`with added as (insert into ${items} (name) values ('raw-1'), ('raw-2') returning name)
          select name, now() as at, 9007199254740993::int8 as n from added order by name`,
    );
    expect(rows.map((r) => r.name)).toEqual(["raw-1", "raw-2"]);
    expect(typeof rows[0]?.at).toBe("string"); // timestamps as text, for the column's mapper
    expect(String(rows[0]?.n)).toBe("9007199254740993");
    expect(await queryRows(handle.db, sql`select 1 where false`)).toEqual([]);
  });

  it("says when its LISTEN is in place, again after the connection under it was killed", async () => {
    const heard: string[] = [];
    let listening = 0;
    const unlisten = await handle.listen(
      "mw_test_channel",
      (p) => heard.push(p),
      () => listening++,
    );
    expect(listening).toBe(1);
    await handle.db.execute(sql`select pg_notify('mw_test_channel', 'one')`);
    await waitFor(() => heard.includes("one"));
    const testDb = opened.serverDb;
    if (testDb) {
      // The server drops the listening connection: postgres.js reconnects and listens again.
      const admin = postgres(testDb.url, { max: 1, onnotice: () => {} });
      try {
        await admin`select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen%'`;
      } finally {
        await admin.end();
      }
      await waitFor(() => listening === 2, { what: "the LISTEN to be re-established" });
      await handle.db.execute(sql`select pg_notify('mw_test_channel', 'two')`);
      await waitFor(() => heard.includes("two"));
    }
    await unlisten();
  });
});

describe("postgres.js pool settings", () => {
  it("never opens more than `max` connections", async () => {
    const testDb = await createTestDatabase("mw_pool");
    const handle = await openDatabase({ url: testDb.url, dataDir: "unused", pool }, schema);
    const observer = postgres(testDb.url.replace(testDb.name, "postgres"), { max: 1 });
    try {
      let finished = false;
      const sleeps = Promise.all(
        Array.from({ length: 9 }, () => handle.db.execute(sql`select pg_sleep(0.2)`)),
      ).finally(() => {
        finished = true;
      });
      const samples: number[] = [];
      while (!finished) {
        const [row] =
          await observer`select count(*)::int as n from pg_stat_activity where datname = ${testDb.name}`;
        samples.push(row?.n ?? 0);
      }
      await sleeps;
      // Nine queries on three connections: the pool was saturated, and never went over.
      expect(Math.max(...samples)).toBe(pool.max);
    } finally {
      await observer.end();
      await handle.close();
      await testDb.drop();
    }
  });
});

describe("prepared statements on postgres", () => {
  /** This connection's prepared statements that read `items`, with how often each ran. */
  const preparedOn = async (db: Queryable) =>
    (
      await queryRows<{ statement: string; runs: string | number }>(
        db,
        sql`select statement, generic_plans + custom_plans as runs from pg_prepared_statements
            where statement like '%from "items"%' and statement not like '%pg_prepared_statements%'`,
      )
    ).map((r) => ({ statement: r.statement, runs: Number(r.runs) }));

  it("runs Drizzle's queries as named statements, parsed once per connection, in transactions too", async () => {
    const testDb = await createTestDatabase("mw_prep");
    // One connection, so every query below meets the statements of the ones before.
    const handle = await openDatabase(
      { url: testDb.url, dataDir: "unused", pool: { ...pool, max: 1 } },
      schema,
    );
    try {
      await handle.migrate(migrations);
      await handle.db.insert(items).values([{ name: "p1" }, { name: "p2" }]);
      for (const name of ["p1", "p2", "p1"]) {
        expect((await handle.db.select().from(items).where(eq(items.name, name)))[0]?.name).toBe(name);
      }
      const seen = await preparedOn(handle.db);
      expect(seen).toHaveLength(1);
      expect(seen[0]?.runs).toBe(3);
      await handle.db.transaction(async (tx) => {
        await tx.select().from(items).where(eq(items.name, "p2"));
        expect((await preparedOn(tx))[0]?.runs).toBe(4);
      });
    } finally {
      await handle.close();
      await testDb.drop();
    }
  });

  it("leaves them unnamed with prepare off (DB_PREPARE=false, for a pooler in transaction mode)", async () => {
    const testDb = await createTestDatabase("mw_noprep");
    const handle = await openDatabase(
      { url: testDb.url, dataDir: "unused", prepare: false, pool: { ...pool, max: 1 } },
      schema,
    );
    try {
      await handle.migrate(migrations);
      await handle.db.select().from(items).where(eq(items.name, "p1"));
      // Nor a query prepared by name: behind such a pooler a named statement breaks it as well.
      const byName = () =>
        handle.db
          .select()
          .from(items)
          .where(eq(items.name, sql.placeholder("name")));
      await byName().prepare("items_by_name").execute({ name: "p1" });
      await prepareSelect(byName(), "items_by_name").execute({ name: "p1" });
      expect(await preparedOn(handle.db)).toEqual([]);
    } finally {
      await handle.close();
      await testDb.drop();
    }
  });
});

describe("migrations of instances starting together (postgres)", () => {
  it("applies them once, one instance after the other, and every instance starts", async () => {
    const testDb = await createTestDatabase("mw_migrate_race");
    const handles = await Promise.all(
      Array.from({ length: 4 }, () => openDatabase({ url: testDb.url, dataDir: "unused", pool }, schema)),
    );
    try {
      // Four replicas of one service migrating at the same moment: none fails on a table another
      // is creating (without the lock, one of them died on CREATE TABLE "items").
      const results = await Promise.allSettled(handles.map((h) => h.migrate(migrations)));
      expect(results.filter((r) => r.status === "rejected")).toEqual([]);
      const applied = await queryRows<{ n: number }>(
        handles[0]?.db as Queryable,
        sql`select count(*)::int as n from drizzle.__drizzle_migrations`,
      );
      expect(applied[0]?.n).toBeGreaterThan(0);
      await handles[1]?.db.insert(items).values({ name: "after the race" });
      // The lock is not left held: a later start migrates at once.
      await handles[2]?.migrate(migrations);
    } finally {
      await Promise.all(handles.map((h) => h.close()));
      await testDb.drop();
    }
  });
});
