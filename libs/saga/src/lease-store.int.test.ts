import { fileURLToPath } from "node:url";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createLogger } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import { eq } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import { v7 as uuidv7 } from "uuid";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { sagas, schema } from "../test/fixtures/schema.js";
import { createLeaseStore } from "./lease-store.js";

const migrations = fileURLToPath(new URL("../test/fixtures/drizzle", import.meta.url));

describe("the lease store's record (real Postgres)", () => {
  let testDb: TestDatabase;
  let database: DatabaseHandle<typeof schema>;

  beforeAll(async () => {
    testDb = await createTestDatabase("mw_saga_store");
    database = await openDatabase(
      {
        url: testDb.url,
        dataDir: "",
        pool: { max: 2, idleTimeoutS: 0, maxLifetimeS: 0, connectTimeoutS: 10 },
      },
      schema,
    );
    await database.migrate(migrations);
  });
  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
  });
  afterEach(() => vi.restoreAllMocks());

  it("builds a step's UPDATE once per shape, not per step, and records each step with its history", async () => {
    const store = createLeaseStore({
      database,
      table: sagas,
      owner: "me",
      leaseMs: 30_000,
      logger: createLogger({ service: "saga-test", level: "silent" }),
    });
    const id = uuidv7();
    await database.db
      .insert(sagas)
      .values({ id, type: "t", status: "running", data: {}, leaseOwner: "me", leaseUntil: store.lease() });
    const builds = vi.spyOn(PgDialect.prototype, "buildUpdateQuery");
    const at = new Date().toISOString();
    for (let step = 0; step < 3; step++) {
      const log = [{ step: `s${step}`, phase: "action" as const, outcome: "done" as const, attempt: 1, at }];
      const next = {
        step: step + 1,
        attempts: 0,
        transientSince: null,
        lastError: null,
        leaseUntil: store.lease(),
      };
      expect(await store.record({ id, status: "running", step }, next, undefined, log)).toBe(true);
    }
    expect(builds).toHaveBeenCalledTimes(1);
    // Not held at that position any more: nothing changes.
    expect(await store.record({ id, status: "running", step: 0 }, { step: 9 })).toBe(false);
    const [row] = await database.db.select().from(sagas).where(eq(sagas.id, id));
    expect(row?.step).toBe(3);
    expect(row?.transientSince).toBeNull();
    expect(row?.history.map((e) => e.step)).toEqual(["s0", "s1", "s2"]);
  });
});
