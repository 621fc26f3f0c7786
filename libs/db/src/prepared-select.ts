import { Column, DrizzleQueryError, fillPlaceholders, is } from "drizzle-orm";
import { NoopCache } from "drizzle-orm/cache/core";
import { readPreparedQuery } from "./drizzle-internals.js";

/** A prepared query's `execute`, whatever its row type. */
interface Executable {
  execute(values?: Record<string, unknown>): Promise<unknown>;
}

/**
 * A SELECT built and prepared once with Drizzle (`db.select(...)...`, not yet run) and run many
 * times: `prepareSelect(query, name).execute({ id })` answers what
 * `query.prepare(name).execute({ id })` answers, rows, errors (`DrizzleQueryError` with the
 * driver's error as `cause`) and statement spans alike, at less CPU per call on a Postgres server.
 *
 * Why: Drizzle's `execute` runs each call through three async layers, three tracing wrappers and
 * a cache check it does not use, and maps each row field by field through `is()` lookups. The
 * users service's GetUser lookup (a flat SELECT by primary key, 128 in flight, one process,
 * load 13-14, medians of 10 alternated rounds): Drizzle's `execute` 34.8 µs of CPU per call,
 * this 22.5 µs, postgres.js's `unsafe(...).values()` alone 19.5 µs. Here the statement text, its
 * parameters and each column's decoder are taken once from Drizzle's prepared query, and a call
 * is one `unsafe(...).values()` (a named prepared statement, as Drizzle asks postgres.js for it)
 * and a loop over the columns.
 *
 * Only a flat selection of columns on postgres.js takes this path; anything else (PGlite, a
 * selection with nested objects or SQL expressions, a Drizzle cache) runs Drizzle's own
 * `execute`, so every query may use it. A drizzle-orm whose prepared postgres.js query lacks a
 * part read here is refused when prepared (a `DrizzleShapeError` naming the part and the
 * drizzle-orm version; see drizzle-internals.ts), never run past.
 */
export function prepareSelect<P extends Executable>(
  query: { prepare(name: string): P },
  name: string,
): Pick<P, "execute"> {
  const prepared = query.prepare(name);
  const lean = leanExecute(prepared);
  return { execute: (lean ?? prepared.execute.bind(prepared)) as P["execute"] };
}

function leanExecute(prepared: Executable): Executable["execute"] | undefined {
  const parts = readPreparedQuery(prepared, "prepareSelect");
  if (!parts) return undefined;
  const { client, queryString, params, logger, prepare, fields } = parts;
  if (!fields || parts.customResultMapper || !(parts.cache === undefined || is(parts.cache, NoopCache)))
    return undefined;
  const keys: string[] = [];
  const columns: Column[] = [];
  for (const { path, field } of fields) {
    if (path.length !== 1 || !is(field, Column)) return undefined;
    keys.push(path[0] as string);
    columns.push(field);
  }
  const toRow = (values: unknown[]) => {
    const row: Record<string, unknown> = {};
    for (let i = 0; i < columns.length; i++) {
      const value = values[i];
      row[keys[i] as string] = value === null ? null : (columns[i] as Column).mapFromDriverValue(value);
    }
    return row;
  };
  return async (values = {}) => {
    const bound = fillPlaceholders(params, values);
    logger.logQuery(queryString, bound);
    let rows: unknown[][];
    try {
      rows = await client.unsafe(queryString, bound, { prepare }).values();
    } catch (err) {
      throw new DrizzleQueryError(queryString, bound, err as Error);
    }
    return rows.map(toRow);
  };
}
