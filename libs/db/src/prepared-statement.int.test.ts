import { randomUUID } from "node:crypto";
import { DrizzleQueryError, eq, sql, TransactionRollbackError } from "drizzle-orm";
import { Cache } from "drizzle-orm/cache/core";
import { integer, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type DriverDatabase, openDriverDatabase } from "../test/driver-database.js";
import type { DatabaseHandle, Queryable } from "./database.js";
import { prepareStatement } from "./prepared-statement.js";

const jobs = pgTable("jobs", {
  id: uuid("id").primaryKey(),
  step: integer("step").notNull(),
  owner: text("owner"),
  since: timestamp("since", { withTimezone: true, mode: "date" }),
  log: jsonb("log").$type<string[]>().notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull(),
});
/** Columns Drizzle fills from a function each time it builds a statement. */
const tokens = pgTable("tokens", {
  id: uuid("id").primaryKey(),
  nonce: text("nonce")
    .notNull()
    .$defaultFn(() => randomUUID()),
  touched: text("touched").$onUpdate(() => randomUUID()),
  hits: integer("hits").notNull(),
});
const schema = { jobs, tokens };

const ONE = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a21";
const TWO = "1c9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a22";
const T0 = new Date("2026-01-02T03:04:05.678Z");

const ph = (name: string) => sql.placeholder(name) as unknown as never;

/** An update with placeholders in its SET, WHERE and a RETURNING of columns and plain SQL. */
const advance = (q: Queryable) =>
  q
    .update(jobs)
    .set({
      step: ph("step"),
      owner: ph("owner"),
      since: ph("since"),
      log: sql`${jobs.log} || ${sql.placeholder("entry")}::jsonb`,
      updatedAt: ph("at"),
    })
    .where(eq(jobs.id, sql.placeholder("id")))
    .returning({
      id: jobs.id,
      step: jobs.step,
      owner: jobs.owner,
      since: jobs.since,
      log: jobs.log,
      updatedAt: jobs.updatedAt,
      label: sql<string>`${jobs.owner} || ':' || ${sql.placeholder("step")}::text`,
    });

describe.each(["postgres", "pglite"] as const)("prepareStatement on %s", (driver) => {
  let opened: DriverDatabase<typeof schema>;
  let handle: DatabaseHandle<typeof schema>;

  beforeAll(async () => {
    opened = await openDriverDatabase(driver, "mw_prepstmt", schema);
    handle = opened.handle;
    await handle.db.execute(sql`create table jobs (id uuid primary key, step integer not null, owner text,
      since timestamptz, log jsonb not null, updated_at timestamptz not null)`);
    await handle.db.execute(sql`create table tokens (id uuid primary key, nonce text not null, touched text,
      hits integer not null)`);
  });
  afterAll(() => opened?.close());

  const insertJob = prepareStatement("jobs_insert", (q) =>
    q.insert(jobs).values({ id: ph("id"), step: 0, owner: null, log: [], updatedAt: ph("at") }),
  );

  it("answers what Drizzle answers, in the caller's transaction, building the statement once on postgres.js", async () => {
    const build = vi.fn(advance);
    const mine = prepareStatement("jobs_advance", build);
    await handle.db.transaction(async (tx) => {
      await insertJob.execute(tx, { id: ONE, at: T0 });
      await insertJob.execute(tx, { id: TWO, at: T0 });
    });
    const values = { id: ONE, step: 1, owner: "a", since: T0, entry: JSON.stringify(["x"]), at: T0 };
    const rows = await handle.db.transaction((tx) => mine.execute(tx, values));
    const theirs = await advance(handle.db)
      .prepare("jobs_advance_drizzle")
      .execute({ ...values, id: TWO });
    expect(rows).toEqual([{ ...theirs[0], id: ONE }]);
    expect(rows).toEqual([
      { id: ONE, step: 1, owner: "a", since: T0, log: ["x"], updatedAt: T0, label: "a:1" },
    ]);
    // null reaches a column whose encoder would not take it (a timestamp's toISOString).
    const [cleared] = await mine.execute(handle.db, { ...values, owner: null, since: null, step: 2 });
    expect(cleared).toMatchObject({ owner: null, since: null, log: ["x", "x"], label: null });
    expect(await mine.execute(handle.db, { ...values, id: "2c9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a23" })).toEqual(
      [],
    );
    expect(build).toHaveBeenCalledTimes(driver === "postgres" ? 1 : 3);
  });

  it("runs on the transaction's connection: rolled back with it", async () => {
    const mine = prepareStatement("jobs_advance", advance);
    const values = { id: TWO, step: 9, owner: "b", since: null, entry: "[]", at: T0 };
    const rolledBack = await handle.db
      .transaction(async (tx) => {
        expect(await mine.execute(tx, values)).toHaveLength(1);
        tx.rollback();
      })
      .catch((e: unknown) => e);
    expect(rolledBack).toBeInstanceOf(TransactionRollbackError);
    const [row] = await handle.db.select().from(jobs).where(eq(jobs.id, TWO));
    expect(row?.step).toBe(1);
  });

  it("fails as Drizzle fails: DrizzleQueryError with the statement, the values and the driver's error", async () => {
    const mine = prepareStatement("jobs_advance", advance);
    const values = { id: "not-a-uuid", step: 1, owner: "a", since: null, entry: "[]", at: T0 };
    const err = await mine.execute(handle.db, values).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DrizzleQueryError);
    expect((err as DrizzleQueryError).cause).toMatchObject({ code: "22P02" });
    await expect(mine.execute(handle.db, { id: ONE })).rejects.toThrow('No value for placeholder "step"');
  });

  it("computes $defaultFn and $onUpdate values per call, as Drizzle does, not once when built", async () => {
    const insert = prepareStatement("tokens_insert", (q) =>
      q.insert(tokens).values({ id: ph("id"), hits: 0 }),
    );
    const touch = prepareStatement("tokens_touch", (q) =>
      q
        .update(tokens)
        .set({ hits: ph("hits") })
        .where(eq(tokens.id, sql.placeholder("id")))
        .returning({ touched: tokens.touched }),
    );
    const ids = [randomUUID(), randomUUID()];
    for (const id of ids) await insert.execute(handle.db, { id });
    const nonces = await handle.db.select({ nonce: tokens.nonce }).from(tokens);
    expect(new Set(nonces.map((r) => r.nonce)).size).toBe(2);
    const touched = [];
    for (const id of ids) touched.push(...(await touch.execute(handle.db, { id, hits: 1 })));
    expect(touched).toHaveLength(2);
    expect(touched[0]).not.toEqual(touched[1]);
  });

  it.runIf(driver === "postgres")(
    "leaves a database with a Drizzle cache or logger to Drizzle: a write invalidates the cache, is logged",
    async () => {
      class Recording extends Cache {
        readonly mutated: unknown[] = [];
        strategy() {
          return "all" as const;
        }
        async get() {
          return undefined;
        }
        async put() {}
        async onMutate(params: unknown) {
          this.mutated.push(params);
        }
      }
      const cache = new Recording();
      const client = postgres(opened.config.url as string, { max: 1, onnotice: () => {} });
      try {
        const cached = drizzle(client, { schema, cache }) as unknown as Queryable;
        const insert = prepareStatement("jobs_insert_cached", (q) =>
          q.insert(jobs).values({ id: ph("id"), step: 0, owner: null, log: [], updatedAt: ph("at") }),
        );
        // First on a database without one: the statement is read then, the cache is per database.
        await insert.execute(handle.db, { id: randomUUID(), at: T0 });
        await insert.execute(cached, { id: randomUUID(), at: T0 });
        expect(cache.mutated).toEqual([{ tables: ["jobs"] }]);
        const logged: string[] = [];
        const logging = drizzle(client, { schema, logger: { logQuery: (text) => logged.push(text) } });
        await insert.execute(logging as unknown as Queryable, { id: randomUUID(), at: T0 });
        expect(logged).toEqual([expect.stringMatching(/^insert into "jobs"/)]);
      } finally {
        await client.end();
      }
    },
  );

  it("fails where Drizzle fails when a placeholder is given undefined (not NULL in its place)", async () => {
    const mine = prepareStatement("jobs_advance", advance);
    const values = {
      id: "3c9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a24",
      step: 1,
      owner: undefined,
      since: T0,
      entry: "[]",
      at: T0,
    };
    const outcome = (p: Promise<unknown>) =>
      p.then(
        (rows) => ({ rows }),
        (e: unknown) => ({ failed: (e as Error).constructor.name }),
      );
    const theirs = await outcome(advance(handle.db).prepare("jobs_advance_drizzle").execute(values));
    expect(await outcome(mine.execute(handle.db, values))).toEqual(theirs);
  });
});
