import { adminUrl, createTestDatabase, type TestDatabase, uniqueName } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * patches/postgres+3.4.10.patch: a new postgres.js connection fetches the array types before its
 * first query. When that fetch fails with the connection still up (a statement timeout, or here a
 * permission error), the waiting query fails with it, and the connection fetches again before
 * its next query. Unpatched, the failure was an unhandled rejection; with only that caught, every
 * later query on the connection ran without array parsers and got `'{1,2}'` (a string) for an
 * int[]. Here the types fetch fails because the test's own role may not read pg_type in the test's
 * own database (per-database catalog, unique role; nothing shared changes).
 */
describe("postgres.js: an array-type fetch that fails on a live connection", () => {
  let testDb: TestDatabase;
  let owner: postgres.Sql;
  let client: postgres.Sql;
  const role = uniqueName("mw_types_role");
  const escaped: unknown[] = [];
  const onEscape = (err: unknown) => escaped.push(err);

  beforeAll(async () => {
    testDb = await createTestDatabase("mw_types");
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`CREATE ROLE "${role}" LOGIN`);
    } finally {
      await admin.end();
    }
    owner = postgres(testDb.url, { max: 1, onnotice: () => {} });
    await owner.unsafe("REVOKE SELECT ON pg_catalog.pg_type FROM PUBLIC");
    const url = new URL(testDb.url);
    url.username = role;
    url.password = "";
    client = postgres(url.toString(), { max: 1, onnotice: () => {} });
    process.on("unhandledRejection", onEscape);
  });
  afterAll(async () => {
    process.off("unhandledRejection", onEscape);
    await client?.end();
    await owner?.end();
    await testDb?.drop();
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`DROP ROLE IF EXISTS "${role}"`);
    } finally {
      await admin.end();
    }
  });

  it("fails the queries while it fails, then parses arrays again on the same connection", async () => {
    const denied = { code: "42501", message: expect.stringContaining("pg_type") };
    // The connection's first query waits for the types fetch, which fails: the query fails with it.
    await expect(client`select pg_backend_pid() as pid`).rejects.toMatchObject(denied);
    // Still up, the connection fetches again before the next query; that fails too, rather than
    // answering without array parsers.
    await expect(client`select '{1,2}'::int[] as a`).rejects.toMatchObject(denied);
    await expect(client.begin((tx) => tx`select 1`)).rejects.toMatchObject(denied);
    const backends = await owner<{ pid: number }[]>`
      select pid from pg_stat_activity where usename = ${role} and datname = ${testDb.name}`;
    expect(backends).toHaveLength(1);
    const pid = backends[0]?.pid;

    await owner.unsafe("GRANT SELECT ON pg_catalog.pg_type TO PUBLIC");
    // The fetch now succeeds on the same backend: a transaction (the first thing on it) and
    // concurrent queries all get parsed arrays.
    const [inTx] = await client.begin((tx) => tx`select '{3}'::int[] as a, pg_backend_pid() as pid`);
    expect(inTx).toEqual({ a: [3], pid });
    const rows = await Promise.all(
      [1, 2, 3].map((n) => client`select ${`{${n},${n + 1}}`}::int[] as a, pg_backend_pid() as pid`),
    );
    expect(rows.map(([r]) => r)).toEqual([1, 2, 3].map((n) => ({ a: [n, n + 1], pid })));
    expect(escaped).toEqual([]);
  });
});
