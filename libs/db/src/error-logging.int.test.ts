import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { createLogger } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import { pgTable, serial, text } from "drizzle-orm/pg-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DatabaseHandle, openDatabase } from "./database.js";

const items = pgTable("items", { id: serial("id").primaryKey(), name: text("name").notNull().unique() });
const schema = { items };
const migrations = fileURLToPath(new URL("../test/fixtures/migrations", import.meta.url));

// Shaped like what the users service stores; the test fails if any piece of it is logged.
const HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Zm9yZ2VkaGFzaGZvcmdlZGhhc2g";
const TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

function capture() {
  let text = "";
  const destination = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return { destination, text: () => text };
}

describe("a failed statement in a log line", () => {
  let handle: DatabaseHandle<typeof schema>;
  let testDb: TestDatabase;
  beforeAll(async () => {
    testDb = await createTestDatabase("mw_dblog");
    handle = await openDatabase(
      {
        url: testDb.url,
        dataDir: "unused",
        pool: { max: 2, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 },
      },
      schema,
    );
    await handle.migrate(migrations);
  });
  afterAll(async () => {
    await handle?.close();
    await testDb?.drop();
  });

  it("keeps the statement and the SQLSTATE but none of the parameters, the failing row or the key", async () => {
    await handle.db.insert(items).values({ name: HASH });
    const duplicate = await handle.db
      .insert(items)
      .values({ name: HASH })
      .catch((e: unknown) => e);
    const tooLong = await handle.db
      .insert(items)
      .values({ id: 2 ** 40, name: TOKEN })
      .catch((e: unknown) => e);
    expect(duplicate).toBeInstanceOf(Error);
    expect(tooLong).toBeInstanceOf(Error);
    // The raw errors do carry the values (Drizzle's message, Postgres's detail): the logger must not.
    expect(String(duplicate)).toContain(HASH);

    const { destination, text } = capture();
    const logger = createLogger({ service: "t", destination });
    logger.error({ err: duplicate }, "unhandled error");
    logger.warn({ err: String(tooLong) }, "stringified");
    logger.error(tooLong as Error, "as first argument");
    logger.flush();
    await new Promise((r) => setImmediate(r));

    const out = text();
    expect(out.split("\n").filter(Boolean)).toHaveLength(3);
    expect(out).not.toContain("c2FsdHNhbHRzYWx0");
    expect(out).not.toContain("Zm9yZ2VkaGFzaGZvcmdlZGhhc2g");
    expect(out).not.toContain("eyJzdWIiOiJ4In0");
    expect(out).not.toContain("Failing row");
    expect(out).not.toContain("1099511627776");
    expect(out).not.toContain("already exists");
    const first = JSON.parse(out.split("\n")[0] as string);
    expect(first.err.message).toContain('insert into "items"');
    expect(first.err.message).toContain("params: [redacted]");
    expect(first.err.cause).toMatchObject({ code: "23505", constraint_name: "items_name_unique" });
  });
});
