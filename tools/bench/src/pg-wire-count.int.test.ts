import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWireCounter, wireDelta } from "./pg-wire-count.js";

describe("the Postgres wire counter", () => {
  let testDb: TestDatabase;
  beforeAll(async () => {
    testDb = await createTestDatabase("mw_wire");
  });
  afterAll(() => testDb?.drop());

  it("counts round trips and executions per statement text, by database, through the relay", async () => {
    const url = new URL(testDb.url);
    const counter = await startWireCounter({ host: url.hostname, port: Number(url.port || 5432) });
    const sql = postgres(counter.url(testDb.url), { max: 1, onnotice: () => {} });
    try {
      await sql`select 1`; // the connection, and postgres.js's type lookup
      const before = counter.snapshot();
      for (let i = 0; i < 3; i++) await sql`select ${i}::int as n`;
      await sql.begin(async (tx) => {
        await tx`select 2 as two`;
      });
      const [delta] = wireDelta(before, counter.snapshot()).filter((d) => d.db === url.pathname.slice(1));
      // 3 prepared selects (one Sync each), BEGIN, the select, COMMIT.
      expect(delta?.roundTrips).toBe(6);
      expect(delta?.statements).toContainEqual({ text: "select $1::int as n", n: 3 });
      expect(delta?.statements).toContainEqual({ text: "select 2 as two", n: 1 });
    } finally {
      await sql.end();
      await counter.close();
    }
  });
});
