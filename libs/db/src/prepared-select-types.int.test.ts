import { eq, sql } from "drizzle-orm";
import {
  alias,
  bigint,
  customType,
  date,
  integer,
  interval,
  json,
  jsonb,
  numeric,
  pgEnum,
  pgTable,
  text,
  timestamp,
} from "drizzle-orm/pg-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DriverDatabase, openDriverDatabase } from "../test/driver-database.js";
import { prepareSelect } from "./prepared-select.js";

// Review h17d: prepareSelect decodes each column itself; every column kind must come out as
// Drizzle's own `execute` gives it (on a server, where its lean path runs), also after an upgrade.
const mood = pgEnum("mood", ["sad", "happy"]);
const bracketed = customType<{ data: string; driverData: string }>({
  dataType: () => "text",
  fromDriver: (v) => `<${v}>`,
});
const kinds = pgTable("kinds", {
  id: integer("id").primaryKey(),
  tsDate: timestamp("ts_date", { withTimezone: true, mode: "date" }),
  tsString: timestamp("ts_string", { withTimezone: true, mode: "string" }),
  tsLocal: timestamp("ts_local"),
  day: date("day"),
  dayDate: date("day_date", { mode: "date" }),
  num: numeric("num"),
  numNumber: numeric("num_number", { mode: "number" }),
  numBigint: numeric("num_bigint", { mode: "bigint" }),
  bigNumber: bigint("big_number", { mode: "number" }),
  bigBigint: bigint("big_bigint", { mode: "bigint" }),
  j: json("j"),
  jb: jsonb("jb"),
  mood: mood("mood"),
  moods: mood("moods").array(),
  stamps: timestamp("stamps", { withTimezone: true, mode: "date" }).array(),
  custom: bracketed("custom"),
  span: interval("span"),
});
const owners = pgTable("owners", {
  id: integer("id").primaryKey(),
  kindId: integer("kind_id"),
  name: text("name"),
});
const schema = { kinds, owners, mood };

const FULL = {
  id: 1,
  tsDate: new Date("2001-02-03T04:05:06.789Z"),
  tsString: "2001-02-03 04:05:06.789+00",
  tsLocal: new Date("2001-02-03T04:05:06.789Z"),
  day: "2001-02-03",
  dayDate: new Date("2001-02-03T00:00:00Z"),
  num: "12.50",
  numNumber: 1.5,
  numBigint: 12345678901234567890n,
  bigNumber: 42,
  bigBigint: 9007199254740993n,
  j: { a: [1, "x"] },
  jb: { b: true },
  mood: "happy" as const,
  moods: ["sad" as const, "happy" as const],
  stamps: [new Date("2001-02-03T04:05:06.789Z")],
  custom: "hello",
  span: "1 day",
};

/** Values as text, bigints and dates included, so a number where Drizzle gives a string shows. */
const exact = (rows: unknown) =>
  JSON.stringify(rows, (_k, v) => (typeof v === "bigint" ? `${v}n` : v === null ? "<null>" : v));

type Query = { prepare(name: string): { execute(values?: Record<string, unknown>): Promise<unknown> } };

describe("prepareSelect decodes every column kind as Drizzle does (postgres)", () => {
  let opened: DriverDatabase<typeof schema>;
  const same = async (query: () => Query, values: Record<string, unknown>) => {
    const mine = await prepareSelect(query(), "mine").execute(values);
    const theirs = await query().prepare("theirs").execute(values);
    expect(mine).toEqual(theirs);
    expect(exact(mine)).toBe(exact(theirs));
    return mine;
  };

  beforeAll(async () => {
    opened = await openDriverDatabase("postgres", "mw_prepsel_kinds", schema);
    const db = opened.handle.db;
    await db.execute(sql`create type mood as enum ('sad', 'happy')`);
    await db.execute(sql`create table kinds (id int primary key, ts_date timestamptz, ts_string timestamptz,
      ts_local timestamp, day date, day_date date, num numeric, num_number numeric, num_bigint numeric,
      big_number bigint, big_bigint bigint, j json, jb jsonb, mood mood, moods mood[], stamps timestamptz[],
      custom text, span interval)`);
    await db.execute(sql`create table owners (id int primary key, kind_id int, name text)`);
    await db.insert(kinds).values([FULL, { id: 2 }]);
    await db.insert(owners).values({ id: 10, kindId: 1, name: "owner" });
  });
  afterAll(() => opened?.close());

  it("every kind, set and null", async () => {
    const byId = () =>
      opened.handle.db
        .select()
        .from(kinds)
        .where(eq(kinds.id, sql.placeholder("id")));
    expect(await same(byId, { id: 1 })).toEqual([{ ...FULL, custom: "<hello>" }]);
    const [empty] = (await same(byId, { id: 2 })) as Record<string, unknown>[];
    expect(Object.values(empty ?? {}).filter((v) => v !== null)).toEqual([2]);
  });

  it("columns of joined and aliased tables, under one column name, in the selection's order", async () => {
    const again = alias(kinds, "again");
    const rows = await same(
      () =>
        opened.handle.db
          .select({
            id: kinds.id,
            ownerId: owners.id,
            owner: owners.name,
            againId: again.id,
            mood: again.mood,
          })
          .from(kinds)
          .leftJoin(owners, eq(owners.kindId, kinds.id))
          .leftJoin(again, eq(again.id, kinds.id))
          .orderBy(kinds.id),
      {},
    );
    expect(rows).toEqual([
      { id: 1, ownerId: 10, owner: "owner", againId: 1, mood: "happy" },
      { id: 2, ownerId: null, owner: null, againId: 2, mood: null },
    ]);
  });
});
