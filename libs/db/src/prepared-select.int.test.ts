import { DrizzleQueryError, eq, sql } from "drizzle-orm";
import { pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { PostgresJsPreparedQuery } from "drizzle-orm/postgres-js";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type DriverDatabase, openDriverDatabase } from "../test/driver-database.js";
import type { DatabaseHandle } from "./database.js";
import { prepareSelect } from "./prepared-select.js";

const people = pgTable("people", {
  id: uuid("id").primaryKey(),
  name: text("name").notNull(),
  nickname: text("nickname"),
  tags: text("tags").array().notNull(),
  bornAt: timestamp("born_at", { withTimezone: true, mode: "date" }).notNull(),
});
const schema = { people };

const ADA = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const BOB = "1c9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a12";

describe.each(["postgres", "pglite"] as const)("prepareSelect on %s", (driver) => {
  let opened: DriverDatabase<typeof schema>;
  let handle: DatabaseHandle<typeof schema>;
  const byId = () =>
    handle.db
      .select({
        id: people.id,
        name: people.name,
        nickname: people.nickname,
        tags: people.tags,
        bornAt: people.bornAt,
      })
      .from(people)
      .where(eq(people.id, sql.placeholder("id")))
      .limit(1);

  beforeAll(async () => {
    opened = await openDriverDatabase(driver, "mw_prepsel", schema);
    handle = opened.handle;
    await handle.db.execute(sql`create table people (id uuid primary key, name text not null,
      nickname text, tags text[] not null, born_at timestamptz not null)`);
    await handle.db.insert(people).values([
      {
        id: ADA,
        name: "Ada",
        nickname: null,
        tags: ["admin", "a,b"],
        bornAt: new Date("1815-12-10T00:00:00Z"),
      },
      { id: BOB, name: "Bob", nickname: "bobby", tags: [], bornAt: new Date("2001-02-03T04:05:06.789Z") },
    ]);
  });
  afterAll(() => opened?.close());
  afterEach(() => vi.restoreAllMocks());

  it("answers the rows Drizzle's own prepared execute answers: nulls, arrays, dates, none", async () => {
    const lean = prepareSelect(byId(), "people_by_id");
    const drizzle = byId().prepare("people_by_id_drizzle");
    for (const id of [ADA, BOB, "2c9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a13"]) {
      const [mine, theirs] = [await lean.execute({ id }), await drizzle.execute({ id })];
      expect(mine).toEqual(theirs);
    }
    const [ada] = await lean.execute({ id: ADA });
    expect(ada).toEqual({
      id: ADA,
      name: "Ada",
      nickname: null,
      tags: ["admin", "a,b"],
      bornAt: new Date("1815-12-10T00:00:00Z"),
    });
    expect(Object.keys(ada ?? {})).toEqual(["id", "name", "nickname", "tags", "bornAt"]);
    expect(await lean.execute({ id: "2c9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a13" })).toEqual([]);
  });

  it("fails as Drizzle fails: DrizzleQueryError with the statement, the values and the driver's error", async () => {
    const lean = prepareSelect(byId(), "people_by_id");
    const err = await lean.execute({ id: "not-a-uuid" }).catch((e: unknown) => e);
    const theirs = await byId()
      .prepare("people_by_id_drizzle")
      .execute({ id: "not-a-uuid" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DrizzleQueryError);
    expect((err as DrizzleQueryError).query).toBe((theirs as DrizzleQueryError).query);
    expect((err as DrizzleQueryError).params).toEqual(["not-a-uuid", 1]);
    expect((err as DrizzleQueryError).cause).toMatchObject({ code: "22P02" });
    await expect(lean.execute({})).rejects.toThrow('No value for placeholder "id" was provided');
  });

  it("runs a flat selection without Drizzle's execute on postgres.js only; a nested one through it", async () => {
    const execute = vi.spyOn(PostgresJsPreparedQuery.prototype, "execute");
    const [row] = await prepareSelect(byId(), "people_by_id").execute({ id: BOB });
    expect(row?.tags).toEqual([]);
    expect(execute).not.toHaveBeenCalled();

    const nested = prepareSelect(
      handle.db
        .select({ id: people.id, who: { name: people.name, nickname: people.nickname } })
        .from(people)
        .where(eq(people.id, sql.placeholder("id"))),
      "people_nested",
    );
    expect(await nested.execute({ id: BOB })).toEqual([{ id: BOB, who: { name: "Bob", nickname: "bobby" } }]);
    expect(execute).toHaveBeenCalledTimes(driver === "postgres" ? 1 : 0);
  });

  it.runIf(driver === "postgres")(
    "refuses, when prepared, a Drizzle whose prepared query lacks what it reads, rather than run past it",
    () => {
      for (const part of [
        "client",
        "queryString",
        "params",
        "logger",
        "prepare",
        "fields",
        "customResultMapper",
      ]) {
        const changed = {
          prepare: (name: string) => {
            const prepared = byId().prepare(name);
            delete (prepared as unknown as Record<string, unknown>)[part];
            return prepared;
          },
        };
        expect(() => prepareSelect(changed, "people_by_id"), part).toThrow(
          new RegExp(
            `^prepareSelect: drizzle-orm [0-9.]+'s PostgresJsPreparedQuery has no usable \`${part}\``,
          ),
        );
      }
    },
  );
});
