import { fileURLToPath } from "node:url";
import { createTelemetry } from "@meshwork/telemetry";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { eq, sql } from "drizzle-orm";
import { pgTable, serial, text } from "drizzle-orm/pg-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DriverDatabase, openDriverDatabase } from "../test/driver-database.js";
import { type DatabaseHandle, openDatabase } from "./database.js";
import { prepareSelect } from "./prepared-select.js";
import { describeStatement } from "./tracing.js";

const items = pgTable("items", { id: serial("id").primaryKey(), name: text("name").notNull().unique() });
const schema = { items };
const migrations = fileURLToPath(new URL("../test/fixtures/migrations", import.meta.url));
/** A value that must never appear in a span: statements carry placeholders, not values. */
const SECRET = "card-4111-1111-1111-1111";

describe("describeStatement", () => {
  it("names the operation and the first table, unquoted, from Drizzle's statements and raw SQL", () => {
    expect(describeStatement('select "id", "name" from "items" where "items"."name" = $1')).toEqual({
      operation: "SELECT",
      collection: "items",
    });
    expect(describeStatement('insert into "orders" ("id") values ($1) returning "id"')).toEqual({
      operation: "INSERT",
      collection: "orders",
    });
    expect(describeStatement('update "sagas" set "step" = $1 where "sagas"."id" = $2')).toMatchObject({
      operation: "UPDATE",
      collection: "sagas",
    });
    expect(describeStatement('delete from "drizzle"."__drizzle_migrations" where id = $1')).toMatchObject({
      operation: "DELETE",
      collection: "drizzle.__drizzle_migrations",
    });
    expect(describeStatement("  SELECT 1")).toEqual({ operation: "SELECT", collection: undefined });
    expect(describeStatement('CREATE TABLE "items" (...)')).toEqual({
      operation: "CREATE",
      collection: undefined,
    });
    expect(describeStatement("")).toEqual({ operation: undefined, collection: undefined });
  });
});

describe.each(["pglite", "postgres"] as const)("statement spans on %s", (driver) => {
  const exporter = new InMemorySpanExporter();
  const telemetry = createTelemetry({
    serviceName: "db-test",
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  let opened: DriverDatabase<typeof schema>;
  let handle: DatabaseHandle<typeof schema>;

  beforeAll(async () => {
    opened = await openDriverDatabase(driver, "mw_dbtrace", schema, { telemetry });
    handle = opened.handle;
    await handle.migrate(migrations);
  });
  afterAll(async () => {
    await opened?.close();
    await telemetry.shutdown();
  });

  /** Runs `fn` in a fresh caller span; returns it and every span of its trace. */
  const traced = async (fn: () => Promise<unknown>) => {
    exporter.reset();
    const caller = telemetry.tracer.startSpan("use case");
    await context.with(trace.setSpan(context.active(), caller), fn).catch(() => {});
    caller.end();
    const spans = exporter
      .getFinishedSpans()
      .filter((s) => s.spanContext().traceId === caller.spanContext().traceId);
    return { caller: caller.spanContext(), spans: spans.filter((s) => s.name !== "use case") };
  };
  const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

  it("makes each statement a CLIENT span, child of the caller's, with the text but none of the values", async () => {
    const { caller, spans } = await traced(async () => {
      await handle.db.insert(items).values({ name: SECRET });
      await handle.db.select().from(items).where(eq(items.name, SECRET));
    });
    expect(spans.map((s) => s.name)).toEqual(["INSERT items", "SELECT items"]);
    for (const s of spans) {
      expect(s.kind).toBe(SpanKind.CLIENT);
      expect(parentOf(s)).toBe(caller.spanId);
      expect(s.attributes["db.system"]).toBe("postgresql");
      expect(s.attributes["db.collection.name"]).toBe("items");
      expect(s.attributes["db.query.text"]).toMatch(/\$1/);
      expect(JSON.stringify(s.attributes)).not.toContain(SECRET);
    }
    expect(spans[0]?.attributes["db.operation.name"]).toBe("INSERT");
    expect(spans[1]?.attributes["db.operation.name"]).toBe("SELECT");
    if (driver === "postgres") {
      expect(spans[0]?.attributes).toMatchObject({
        "server.address": "127.0.0.1",
        "db.namespace": opened.serverDb?.name,
      });
    }
  });

  it("groups a transaction's statements under a transaction span, and marks a failed statement and its transaction", async () => {
    const { caller, spans } = await traced(() =>
      handle.db.transaction(async (tx) => {
        await tx.update(items).set({ name: "renamed" }).where(eq(items.name, SECRET));
        await tx.insert(items).values({ name: "renamed" }); // unique violation
      }),
    );
    const txSpan = spans.find((s) => s.name === "transaction") as ReadableSpan;
    expect(txSpan).toBeDefined();
    expect(parentOf(txSpan)).toBe(caller.spanId);
    expect(txSpan.status.code).toBe(SpanStatusCode.ERROR);
    const statements = spans.filter(
      (s) => s.kind === SpanKind.CLIENT && s.attributes["db.collection.name"] === "items",
    );
    expect(statements.map((s) => s.name)).toEqual(["UPDATE items", "INSERT items"]);
    for (const s of statements) expect(parentOf(s)).toBe(txSpan.spanContext().spanId);
    const failed = statements[1] as ReadableSpan;
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed.attributes["db.response.status_code"]).toBe("23505");
    // Rolled back: the row kept its name.
    expect(await handle.db.select().from(items).where(eq(items.name, SECRET))).toHaveLength(1);
  });

  // Review h17d: prepareSelect runs its statement on the client Drizzle prepared it on, so the
  // statement is traced and, given a transaction, runs in it (under its span), not on the pool.
  it("traces prepareSelect's statements like Drizzle's, in the transaction it was prepared in", async () => {
    const byName = (db: Pick<typeof handle.db, "select">) =>
      prepareSelect(
        db
          .select()
          .from(items)
          .where(eq(items.name, sql.placeholder("name"))),
        "items_by_name",
      );
    const found: unknown[][] = [];
    const { caller, spans } = await traced(() =>
      handle.db.transaction(async (tx) => {
        await tx.insert(items).values({ name: "only in tx" });
        found.push(await byName(tx).execute({ name: "only in tx" }));
        found.push(await byName(tx).execute({ name: "nowhere" }));
        tx.rollback();
      }),
    );
    expect(found.map((rows) => rows.length)).toEqual([1, 0]);
    expect(await byName(handle.db).execute({ name: "only in tx" })).toEqual([]);
    const txSpan = spans.find((s) => s.name === "transaction") as ReadableSpan;
    expect(parentOf(txSpan)).toBe(caller.spanId);
    const selects = spans.filter((s) => s.name === "SELECT items");
    expect(selects).toHaveLength(2);
    for (const s of selects) {
      expect(s.kind).toBe(SpanKind.CLIENT);
      expect(parentOf(s)).toBe(txSpan.spanContext().spanId);
    }
  });

  // Review h19seal2: a failed statement's error (Drizzle's `Failed query: ...\nparams: ...`)
  // must not reach an exported span's status: the transaction span's status took its message.
  it("exports a failed statement and its transaction with no parameter value in any status or event", async () => {
    const { spans } = await traced(() =>
      handle.db.transaction(async (tx) => {
        await tx.insert(items).values({ name: SECRET }); // unique violation: SECRET is there
      }),
    );
    const failed = spans.filter((s) => s.status.code === SpanStatusCode.ERROR);
    expect(failed.map((s) => s.name).sort()).toEqual(["INSERT items", "transaction"]);
    for (const s of failed) {
      const exported = JSON.stringify({ status: s.status, events: s.events, attributes: s.attributes });
      expect(exported, s.name).not.toContain(SECRET);
      expect(exported, s.name).not.toMatch(/params: (?!\[redacted\])/);
    }
  });

  // Defined for the server only (not a skipped test for PGlite): PGlite takes the same path (no
  // tracer that records, no patching), and a second instance of it is slow.
  if (driver === "postgres")
    it("records nothing, and still works, with the id-only tracer", async () => {
      const quiet = createTelemetry({ serviceName: "quiet" });
      const other = await openDatabase(opened.config, schema, { telemetry: quiet });
      try {
        await other.migrate(migrations);
        exporter.reset();
        await other.db.insert(items).values({ name: "quiet" });
        expect(await other.db.select().from(items).where(eq(items.name, "quiet"))).toHaveLength(1);
        expect(exporter.getFinishedSpans()).toEqual([]);
      } finally {
        await other.close();
      }
    });
});
