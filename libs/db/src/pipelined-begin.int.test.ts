import net from "node:net";
import { createTestDatabase, type TestDatabase, waitFor } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * patches/postgres+3.4.10.patch (issue 24): a plain BEGIN is not waited for; the transaction's
 * first statement goes out in the same write. A transaction of two statements is three writes
 * (BEGIN + first, second, COMMIT), not four, and every statement still runs inside it.
 */
describe("postgres.js transactions with BEGIN pipelined (patched)", () => {
  let database: TestDatabase;
  let sql: postgres.Sql;

  /** Socket writes of this process while `work` runs (nothing else writes meanwhile). */
  async function writesDuring<T>(work: () => Promise<T>): Promise<{ writes: number; value: T }> {
    const write = net.Socket.prototype.write;
    let writes = 0;
    net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
      writes++;
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof write;
    try {
      const value = await work();
      return { writes, value };
    } finally {
      net.Socket.prototype.write = write;
    }
  }

  beforeAll(async () => {
    database = await createTestDatabase("mw_begin");
    sql = postgres(database.url, { max: 2, onnotice: () => {} });
    await sql`create table items (id int primary key)`;
  });

  afterAll(async () => {
    await sql?.end();
    await database?.drop();
  });

  it("sends the first statement with BEGIN: a two-statement transaction is three writes", async () => {
    const { writes, value } = await writesDuring(() =>
      sql.begin(async (tx) => {
        const [a] = await tx<{ x: string }[]>`select txid_current()::text as x`;
        const [b] = await tx<{ x: string }[]>`select txid_current()::text as x`;
        return [a?.x, b?.x];
      }),
    );
    expect(value[0]).toBe(value[1]);
    expect(writes).toBe(3);
  });

  it("waits for a BEGIN with options, as before", async () => {
    const { writes } = await writesDuring(() =>
      sql.begin("read write", async (tx) => {
        await tx`select 1`;
        await tx`select 2`;
      }),
    );
    expect(writes).toBe(4);
  });

  it("keeps every statement inside its transaction with more transactions than connections", async () => {
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        sql
          .begin(async (tx) => {
            const [a] = await tx<{ x: string }[]>`select txid_current()::text as x`;
            await tx`insert into items values (${i})`;
            // Every third one fails after its insert: the insert is rolled back with it.
            if (i % 3 === 0) await tx`select 1 / 0`;
            const [b] = await tx<{ x: string }[]>`select txid_current()::text as x`;
            return a?.x === b?.x;
          })
          .catch((err: Error) => err.message),
      ),
    );
    expect(results.filter((r) => r === "division by zero")).toHaveLength(20);
    expect(results.filter((r) => r === true)).toHaveLength(40);
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from items`;
    expect(row?.n).toBe(40);
    const ids = (await sql<{ id: number }[]>`select id from items`).map((r) => r.id);
    expect(ids.every((id) => id % 3 !== 0)).toBe(true);
  });

  it("rolls a savepoint back inside a pipelined transaction", async () => {
    await sql.begin(async (tx) => {
      await tx`insert into items values (1001)`;
      await tx
        .savepoint(async (sp) => {
          await sp`insert into items values (1002)`;
          throw new Error("undo the savepoint");
        })
        .catch(() => {});
    });
    const ids = (await sql<{ id: number }[]>`select id from items where id > 1000`).map((r) => r.id);
    expect(ids).toEqual([1001]);
  });

  it("fails a statement sent after its transaction's connection closed, not runs it on the connection opened again", async () => {
    // One connection: the pool opens it again for the next query while the transaction's
    // function still runs (a non-SQL await before its statement).
    const one = postgres(database.url, { max: 1, onnotice: () => {} });
    try {
      let release = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let statement: Promise<string> | undefined;
      const outcome = one
        .begin(async (tx) => {
          await gate;
          statement = tx`insert into items values (2001)`.then(
            () => "ran",
            (err: Error & { code?: string }) => String(err.code),
          );
          await statement;
        })
        .then(
          () => "committed",
          (err: Error & { code?: string }) => err.code,
        );
      const idle = () => sql<{ pid: number }[]>`
        select pid from pg_stat_activity
        where datname = current_database() and state = 'idle in transaction'`;
      const [backend] = await waitFor(
        async () => {
          const found = await idle();
          return found.length ? found : undefined;
        },
        { what: "the transaction's backend" },
      );
      await sql`select pg_terminate_backend(${backend?.pid ?? 0})`;
      expect(await outcome).toBe("CONNECTION_CLOSED");
      // The pool connects again for its next query; the transaction's statement comes after.
      expect(await one`select 1 as x`).toEqual([{ x: 1 }]);
      release();
      expect(await waitFor(() => statement, { what: "the statement sent" })).toBe("CONNECTION_CLOSED");
      const rows = await sql`select id from items where id = 2001`;
      expect(rows).toHaveLength(0);
    } finally {
      await one.end();
    }
  });
});
