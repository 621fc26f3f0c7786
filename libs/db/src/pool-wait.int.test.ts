import { Code, ConnectError } from "@connectrpc/connect";
import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isConnectionError } from "./connection-errors.js";
import { type DatabaseHandle, openDatabase } from "./database.js";
import { PoolWaitTimeoutError } from "./pool-metrics.js";

describe("the wait for a pooled connection is bounded (postgres.js)", () => {
  let testDb: TestDatabase;
  const logged: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const logger = {
    warn: (fields: Record<string, unknown>, msg: string) => logged.push({ level: "warn", msg, fields }),
    info: (fields: Record<string, unknown>, msg: string) => logged.push({ level: "info", msg, fields }),
  };
  const open = (max: number, waitTimeoutMs: number) =>
    openDatabase(
      {
        url: testDb.url,
        dataDir: "unused",
        pool: { max, idleTimeoutS: 30, maxLifetimeS: 60, connectTimeoutS: 5, waitTimeoutMs },
      },
      {},
      { logger },
    );
  const handles: DatabaseHandle<Record<string, never>>[] = [];

  beforeAll(async () => {
    testDb = await createTestDatabase("mw_poolwait");
  });
  afterAll(async () => {
    for (const h of handles) await h.close();
    await testDb?.drop();
  });

  it("fails a transaction that waited the bound UNAVAILABLE, naming the pool; says so once per episode", async () => {
    const db = await open(2, 400);
    handles.push(db);
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let holding = 0;
    const hold = () =>
      db.db.transaction(async (tx) => {
        await tx.execute(sql`select 1`);
        holding += 1;
        await held;
      });
    // Both connections opened first, by plain queries (unbounded): on a loaded machine opening a
    // connection can take longer than the 400 ms bound, which would refuse the holders themselves.
    await Promise.all([db.db.execute(sql`select pg_sleep(0.05)`), db.db.execute(sql`select pg_sleep(0.05)`)]);
    const holders = [hold(), hold()];
    for (const deadline = Date.now() + 10_000; holding < 2; ) {
      if (Date.now() > deadline) throw new Error("the two holders never got their connections");
      await new Promise((r) => setTimeout(r, 10));
    }
    let ranAnyway = 0;
    const waiter = async () => {
      const started = performance.now();
      const err = await db.db
        .transaction(async () => {
          ranAnyway += 1;
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      return { err, ms: performance.now() - started };
    };
    const refused = await Promise.all([waiter(), waiter(), waiter()]);
    for (const { err, ms } of refused) {
      expect((err as Error).cause).toBeInstanceOf(PoolWaitTimeoutError);
      expect(ConnectError.from(err).code).toBe(Code.Unavailable);
      expect(ConnectError.from(err).rawMessage).toBe(
        `database pool ${testDb.name}: no connection free after waiting 400 ms (all 2 in use)`,
      );
      expect(isConnectionError(err)).toBe(true);
      expect(ms).toBeGreaterThanOrEqual(390);
      expect(ms).toBeLessThan(5_000);
    }
    // One line for the three refusals.
    expect(logged.filter((l) => l.level === "warn")).toEqual([
      {
        level: "warn",
        msg: "database pool exhausted: transactions refused UNAVAILABLE",
        fields: { pool: testDb.name, waitTimeoutMs: 400, max: 2 },
      },
    ]);

    release();
    await Promise.all(holders);
    // The abandoned transactions got their connections later and gave them back unused.
    expect(
      await db.db.transaction(
        async (tx) => ((await tx.execute(sql`select 7 as n`)) as unknown as unknown[])[0],
      ),
    ).toEqual({
      n: 7,
    });
    expect(ranAnyway).toBe(0);
    expect(logged.filter((l) => l.level === "info")).toMatchObject([
      { msg: "database pool has free connections again", fields: { pool: testDb.name, refused: 3 } },
    ]);
  });

  it("fails a plain query (outside a transaction) that waited the bound UNAVAILABLE, as a transaction", async () => {
    const db = await open(2, 400);
    handles.push(db);
    // Both connections opened first (see above), then held by two transactions.
    await Promise.all([db.db.execute(sql`select pg_sleep(0.05)`), db.db.execute(sql`select pg_sleep(0.05)`)]);
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let holding = 0;
    const holders = [0, 1].map(() =>
      db.db.transaction(async (tx) => {
        await tx.execute(sql`select 1`);
        holding += 1;
        await held;
      }),
    );
    for (const deadline = Date.now() + 10_000; holding < 2; ) {
      if (Date.now() > deadline) throw new Error("the two holders never got their connections");
      await new Promise((r) => setTimeout(r, 10));
    }
    const started = performance.now();
    const [err, pingErr] = await Promise.all([
      db.db.execute(sql`select 8 as n`).then(
        () => undefined,
        (e: unknown) => e,
      ),
      db.ping().then(
        () => undefined,
        (e: unknown) => e,
      ),
    ]);
    const ms = performance.now() - started;
    for (const e of [err, pingErr]) {
      // Drizzle wraps the driver's error (DrizzleQueryError); the UNAVAILABLE one is in its causes.
      const unavailable = e instanceof ConnectError ? e : (e as Error).cause;
      expect(unavailable).toBeInstanceOf(ConnectError);
      expect((unavailable as ConnectError).code).toBe(Code.Unavailable);
      expect((unavailable as Error).cause).toBeInstanceOf(PoolWaitTimeoutError);
      expect((unavailable as ConnectError).rawMessage).toBe(
        `database pool ${testDb.name}: no connection free after waiting 400 ms (all 2 in use)`,
      );
      expect(isConnectionError(e)).toBe(true);
    }
    expect(ms).toBeGreaterThanOrEqual(390);
    expect(ms).toBeLessThan(5_000);
    release();
    await Promise.all(holders);
    // The refused query left the queue: the pool serves the next one.
    expect(await db.db.execute(sql`select 9 as n`)).toEqual([{ n: 9 }]);
  });

  it("turns the pool deadlock (a transaction waiting for a second connection of a full pool) into UNAVAILABLE", async () => {
    const db = await open(1, 300);
    handles.push(db);
    const err = await db.db
      .transaction(async (tx) => {
        await tx.execute(sql`select 1`);
        await db.db.transaction(async (inner) => inner.execute(sql`select 2`));
      })
      .catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(await db.db.execute(sql`select 3 as n`)).toEqual([{ n: 3 }]);
  });

  it("leaves a pool under the bound alone: 30 short transactions on 2 connections all commit", async () => {
    const db = await open(2, 3_000);
    handles.push(db);
    logged.length = 0;
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        db.db.transaction(async (tx) => {
          await tx.execute(sql`select pg_sleep(0.01)`);
          return ((await tx.execute(sql`select ${i}::int as i`)) as unknown as unknown[])[0];
        }),
      ),
    );
    expect(results).toEqual(Array.from({ length: 30 }, (_, i) => ({ i })));
    expect(logged).toEqual([]);
  });
});
