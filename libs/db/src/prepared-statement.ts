import {
  Column,
  DrizzleQueryError,
  getTableColumns,
  is,
  NoopLogger,
  Param,
  Placeholder,
  SQL,
} from "drizzle-orm";
import { NoopCache } from "drizzle-orm/cache/core";
import { PgInsertBase, PgUpdateBase } from "drizzle-orm/pg-core";
import type { Queryable } from "./database.js";
import {
  builtTable,
  readPreparedQuery,
  readSession,
  sqlDecoder,
  type UnsafeClient,
} from "./drizzle-internals.js";

/** A query Drizzle can prepare: an insert, update, delete or select not yet run. */
interface Preparable {
  prepare(name: string): { execute(values?: Record<string, unknown>): Promise<unknown> };
}

/** What the statement's text and columns are, read once from Drizzle's prepared query. */
interface Shape {
  queryString: string;
  params: Filler[];
  /** One decoder per returned column (undefined: the statement returns no rows). */
  columns?: { key: string; decode(value: unknown): unknown }[];
}

/**
 * A statement whose shape is fixed (placeholders where the values go), built by Drizzle once and
 * run many times on any database or transaction: `statement.execute(tx, { id, status })`
 * answers what `build(tx).prepare(name).execute(values)` answers (the returned rows mapped by
 * their columns, errors as `DrizzleQueryError` with the driver's error as `cause`).
 *
 * Why: Drizzle builds a statement's SQL text from its parts on every call, and a query
 * prepared with `.prepare()` belongs to the session it was built on, so a statement run in
 * a transaction (a saga step's record, an order's status) was built per call. Here the text,
 * its parameters and each returned column's decoder are taken once from a prepared query, and
 * a call on postgres.js is one `unsafe(...)` on the caller's connection (the transaction's, so
 * it stays in the transaction) and a loop over the columns. `null` goes to any placeholder
 * as SQL NULL without the column's encoder (which may not accept it).
 *
 * Anything else (PGlite, a returned column that is neither a column nor plain SQL, a database
 * with a Drizzle cache (which a write invalidates, a read fills) or a Drizzle logger, an insert
 * or update of a table with a `$defaultFn` or `$onUpdate` column, whose value Drizzle computes
 * while building the statement and would otherwise be the first call's for every call) runs
 * Drizzle's own prepare and execute, built per call. A drizzle-orm whose prepared postgres.js
 * query lacks a part read here is refused at the first call (a `DrizzleShapeError` naming the part
 * and the drizzle-orm version; see drizzle-internals.ts), never run past.
 */
export function prepareStatement<R = Record<string, unknown>>(
  name: string,
  build: (q: Queryable) => Preparable,
): { execute(q: Queryable, values: Record<string, unknown>): Promise<R[]> } {
  let shape: Shape | null | undefined;
  const viaDrizzle = (q: Queryable, values: Record<string, unknown>) => {
    const prepared = build(q).prepare(name);
    withNulls(prepared, values);
    return prepared.execute(values) as Promise<R[]>;
  };
  return {
    execute(q, values) {
      const client = postgresJsClient(q);
      if (!client) return viaDrizzle(q, values);
      if (shape === undefined) {
        try {
          const built = build(q);
          shape = fillsPerBuild(built) ? null : readShape(built.prepare(name));
        } catch (err) {
          return Promise.reject(err); // a DrizzleShapeError, as a failed call, not a throw
        }
      }
      if (shape === null) return viaDrizzle(q, values);
      return run(client, shape, values) as Promise<R[]>;
    },
  };
}

/** The postgres.js client behind a Drizzle database or transaction, or undefined (PGlite). */
function postgresJsClient(q: Queryable): UnsafeClient | undefined {
  const session = readSession(q, "prepareStatement");
  if (!session) return undefined;
  const { client, cache, logger } = session;
  // Per database, not once: a Drizzle cache (a write invalidates it) or logger is left to Drizzle.
  if (!(cache === undefined || is(cache, NoopCache)) || !(logger === undefined || is(logger, NoopLogger)))
    return undefined;
  return client;
}

/**
 * Whether Drizzle fills a column of this insert or update from a JavaScript function while
 * building it (`$defaultFn`, `$onUpdate`: a fresh id, a time): such a value must be computed
 * per call, so the statement cannot be built once.
 */
function fillsPerBuild(built: unknown): boolean {
  if (!is(built, PgInsertBase) && !is(built, PgUpdateBase)) return false;
  return Object.values(getTableColumns(builtTable(built, "prepareStatement"))).some(
    (c) => c.defaultFn !== undefined || c.onUpdateFn !== undefined,
  );
}

/**
 * The statement read from Drizzle's prepared postgres.js query, or null when it is not one this
 * runs (a custom result mapper, a nested selection, a field neither a column nor plain SQL).
 */
function readShape(prepared: unknown): Shape | null {
  const p = readPreparedQuery(prepared, "prepareStatement");
  if (!p || p.customResultMapper) return null;
  if (p.fields === undefined) return { queryString: p.queryString, params: fillers(p.params) };
  const columns: NonNullable<Shape["columns"]> = [];
  for (const { path, field } of p.fields) {
    if (path.length !== 1) return null;
    const key = path[0] as string;
    if (is(field, Column)) columns.push({ key, decode: (v) => field.mapFromDriverValue(v) });
    else if (is(field, SQL)) {
      const decoder = sqlDecoder(field, "prepareStatement");
      columns.push({ key, decode: (v) => decoder.mapFromDriverValue(v) });
    } else return null;
  }
  return { queryString: p.queryString, params: fillers(p.params), columns };
}

/**
 * Drizzle's own execute hands `null` to the column's encoder, which may throw (a timestamp's):
 * the placeholders given `null` become plain NULL parameters of this prepared query (built for
 * this one call).
 */
function withNulls(prepared: unknown, values: Record<string, unknown>): void {
  const p = prepared as { params?: unknown };
  if (!Array.isArray(p.params)) return;
  p.params = p.params.map((param) =>
    is(param, Param) && is(param.value, Placeholder) && values[param.value.name] === null ? null : param,
  );
}

/** How a call fills one parameter: a value fixed when built, or a placeholder's (encoded by its column, or not). */
type Filler = { value: unknown } | { name: string; encoder?: { mapToDriverValue(v: unknown): unknown } };

/** What each parameter takes, decided once when the statement is read (no `is()` per call). */
function fillers(params: unknown[]): Filler[] {
  return params.map((p) => {
    if (is(p, Placeholder)) return { name: p.name };
    if (is(p, Param) && is(p.value, Placeholder)) return { name: p.value.name, encoder: p.encoder };
    if (is(p, Param)) return { value: p.encoder.mapToDriverValue(p.value) };
    return { value: p };
  });
}

/** The statement's parameters with `values` in their placeholders; `null` goes as NULL, unencoded. */
function fill(fillers: readonly Filler[], values: Record<string, unknown>): unknown[] {
  const bound = new Array<unknown>(fillers.length);
  for (let i = 0; i < fillers.length; i++) {
    const f = fillers[i] as Filler;
    if ("value" in f) {
      bound[i] = f.value;
      continue;
    }
    if (!(f.name in values)) throw new Error(`No value for placeholder "${f.name}" was provided`);
    const value = values[f.name];
    // `undefined` goes on as Drizzle sends it (postgres.js refuses it): never quietly NULL.
    bound[i] = value === null ? null : f.encoder ? f.encoder.mapToDriverValue(value) : value;
  }
  return bound;
}

async function run(client: UnsafeClient, shape: Shape, values: Record<string, unknown>): Promise<unknown[]> {
  const { queryString, columns } = shape;
  const bound = fill(shape.params, values);
  try {
    if (!columns) return await client.unsafe(queryString, bound, { prepare: true });
    const rows = await client.unsafe(queryString, bound, { prepare: true }).values();
    return rows.map((values) => {
      const row: Record<string, unknown> = {};
      for (let i = 0; i < columns.length; i++) {
        const c = columns[i] as (typeof columns)[number];
        const v = values[i];
        row[c.key] = v === null ? null : c.decode(v);
      }
      return row;
    });
  } catch (err) {
    throw new DrizzleQueryError(queryString, bound, err as Error);
  }
}
