import { Column, eq, is, NoopLogger, Param, Placeholder, SQL, sql } from "drizzle-orm";
import { NoopCache } from "drizzle-orm/cache/core";
import { integer, pgTable, text, uuid } from "drizzle-orm/pg-core";
import { drizzle, PostgresJsPreparedQuery } from "drizzle-orm/postgres-js";
import { npmVersion } from "drizzle-orm/version";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import {
  builtTable,
  DrizzleShapeError,
  readPreparedQuery,
  readSession,
  sqlDecoder,
} from "./drizzle-internals.js";
import { prepareSelect } from "./prepared-select.js";
import { prepareStatement } from "./prepared-statement.js";

// Pins the shape of Drizzle's internals that prepareSelect and prepareStatement read (through
// drizzle-internals.ts): a drizzle-orm that renamed, dropped or retyped one of them fails here, in
// CI, before a service would refuse its statements. No server: postgres.js connects at the first
// query, and none is run.

const jobs = pgTable("jobs", {
  id: uuid("id").primaryKey(),
  step: integer("step").notNull(),
  owner: text("owner"),
});

const client = postgres("postgres://nobody@127.0.0.1:1/none", { max: 1 });
const db = drizzle(client);
afterAll(() => client.end({ timeout: 0 }));

describe("Drizzle's internals read by prepareSelect and prepareStatement", () => {
  it("a prepared postgres.js query has its text, parameters, selection, client, logger and cache", () => {
    const built = db
      .select({ id: jobs.id, label: sql<number>`${jobs.step} + 1`.mapWith(Number) })
      .from(jobs)
      .where(eq(jobs.owner, sql.placeholder("owner")));
    const prepared = built.prepare("jobs_by_owner");
    expect(is(prepared, PostgresJsPreparedQuery)).toBe(true);
    const parts = readPreparedQuery(prepared, "test");
    expect(parts).toBeDefined();
    if (!parts) return;
    expect(parts.queryString).toBe(built.toSQL().sql);
    expect(parts.params).toHaveLength(1);
    const [param] = parts.params;
    // A placeholder compared with a column: the Placeholder itself.
    expect(is(param, Placeholder) && param.name).toBe("owner");
    expect(parts.client).toBe(client);
    expect(parts.prepare).toBe(true);
    expect(is(parts.logger, NoopLogger)).toBe(true);
    expect(is(parts.cache, NoopCache)).toBe(true);
    expect(parts.customResultMapper).toBeUndefined();
    expect(parts.fields?.map((f) => f.path)).toEqual([["id"], ["label"]]);
    const [id, label] = parts.fields ?? [];
    expect(is(id?.field, Column)).toBe(true);
    expect(is(label?.field, SQL)).toBe(true);
    expect(sqlDecoder(label?.field as SQL, "test").mapFromDriverValue("41")).toBe(41);
  });

  it("a statement that returns no rows has no selection; its parameters are Params, values and Placeholders", () => {
    const prepared = db
      .update(jobs)
      .set({ step: sql.placeholder("step") as never, owner: "me" })
      .where(eq(jobs.id, sql.placeholder("id")))
      .prepare("jobs_step");
    const parts = readPreparedQuery(prepared, "test");
    expect(parts?.fields).toBeUndefined();
    expect(parts?.queryString).toBe('update "jobs" set "step" = $1, "owner" = $2 where "jobs"."id" = $3');
    const [step, owner, id] = parts?.params ?? [];
    expect(is(step, Param) && is(step.value, Placeholder) && step.value.name).toBe("step");
    expect(is(step, Param) && step.encoder).toBe(jobs.step);
    // A plain value goes as the value itself, already encoded; a WHERE placeholder as itself.
    expect(owner).toBe("me");
    expect(is(id, Placeholder) && id.name).toBe("id");
  });

  it("a database and a transaction's session hold postgres.js's client, cache and logger", () => {
    const session = readSession(db, "test");
    expect(session?.client).toBe(client);
    expect(is(session?.cache, NoopCache)).toBe(true);
    expect(is(session?.logger, NoopLogger)).toBe(true);
  });

  it("a built insert or update knows its table", () => {
    expect(builtTable(db.insert(jobs).values({ id: sql.placeholder("id") as never, step: 0 }), "test")).toBe(
      jobs,
    );
    expect(builtTable(db.update(jobs).set({ step: 1 }), "test")).toBe(jobs);
  });
});

describe("a drizzle-orm whose shape moved", () => {
  /** A prepared query as a drizzle-orm that renamed `queryString` would make it. */
  const moved = () => {
    const prepared = db.select({ id: jobs.id }).from(jobs).prepare("jobs_all");
    const { queryString, ...rest } = prepared as unknown as Record<string, unknown>;
    return Object.assign(Object.create(Object.getPrototypeOf(prepared)), { ...rest, sql: queryString });
  };

  it("is refused by prepareSelect when prepared, naming the part and the versions", () => {
    const error = (() => {
      try {
        prepareSelect({ prepare: moved }, "jobs_all");
      } catch (err) {
        return err;
      }
    })();
    expect(error).toBeInstanceOf(DrizzleShapeError);
    expect((error as Error).message).toBe(
      `prepareSelect: drizzle-orm ${npmVersion}'s PostgresJsPreparedQuery has no usable \`queryString\` (written against drizzle-orm 0.45; see libs/db/src/drizzle-internals.ts)`,
    );
  });

  it("is refused by prepareStatement at its first call, the same way", async () => {
    const statement = prepareStatement("jobs_all", () => ({ prepare: moved }));
    await expect(statement.execute(db, {})).rejects.toThrow(
      /^prepareStatement: drizzle-orm .*'s PostgresJsPreparedQuery has no usable `queryString`/,
    );
  });
});
