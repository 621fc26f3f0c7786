import { describe, expect, it } from "vitest";
import { databaseServiceOptions, invalidValueOf, isConnectionError } from "./connection-errors.js";

const pg = (code: string, message = "x") => Object.assign(new Error(message), { code });

describe("isConnectionError", () => {
  it.each([
    ["57P01 terminating connection due to administrator command", pg("57P01")],
    ["57P03 the database system is shutting down", pg("57P03", "the database system is shutting down")],
    ["08006 connection failure", pg("08006")],
    ["a database closed to connections", pg("55000", 'database "x" is not currently accepting connections')],
    ["postgres.js CONNECTION_CLOSED", pg("CONNECTION_CLOSED")],
    ["ECONNREFUSED", pg("ECONNREFUSED")],
    ["ECONNRESET wrapped by Drizzle", new Error("Failed query: select 1", { cause: pg("ECONNRESET") })],
    ["a closed PGlite", new Error("PGlite is closed")],
    ["the server starting up, with no SQLSTATE", new Error("the database system is starting up")],
  ])("%s is one", (_what, err) => {
    expect(isConnectionError(err)).toBe(true);
  });

  it.each([
    ["a unique violation", pg("23505")],
    ["a check violation wrapped by Drizzle", new Error("Failed query", { cause: pg("23514") })],
    ["55000 for another reason", pg("55000", "cannot execute in a read-only transaction")],
    ["a syntax error", pg("42601")],
    ["a plain error", new Error("boom")],
    ["not an error", "ECONNRESET"],
    ["nothing", undefined],
  ])("%s is not", (_what, err) => {
    expect(isConnectionError(err)).toBe(false);
  });
});

describe("databaseServiceOptions", () => {
  it("checks readiness with the database's ping and classifies its connection errors", async () => {
    let pings = 0;
    const options = databaseServiceOptions({
      ping: async () => {
        pings++;
      },
    });
    expect(options.readiness.map((r) => r.name)).toEqual(["database"]);
    await options.readiness[0]?.check();
    expect(pings).toBe(1);
    expect(options.unavailableWhen(pg("57P01"))).toBe(true);
    expect(options.unavailableWhen(pg("23505"))).toBe(false);
    expect(options.invalidWhen(pg("22003", "bigint out of range"))).toBe(
      "invalid value: bigint out of range",
    );
    expect(options.invalidWhen(pg("23505"))).toBeUndefined();
  });
});

describe("invalidValueOf", () => {
  it("names the column when the server does, through Drizzle's wrapping", () => {
    const err = new Error("Failed query: insert ...", {
      cause: Object.assign(pg("22001", "value too long for type character varying(3)"), {
        column_name: "code",
      }),
    });
    expect(invalidValueOf(err)).toBe("invalid value: code: value too long for type character varying(3)");
  });

  it.each([
    ["a unique violation", pg("23505")],
    ["a connection error", pg("08006")],
    ["a plain error", new Error("boom")],
    ["nothing", undefined],
  ])("%s is not a data exception", (_what, err) => {
    expect(invalidValueOf(err)).toBeUndefined();
  });
});
