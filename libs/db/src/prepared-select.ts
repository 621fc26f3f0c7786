import { Column, DrizzleQueryError, fillPlaceholders, is } from "drizzle-orm";
import { NoopCache } from "drizzle-orm/cache/core";
import { PostgresJsPreparedQuery } from "drizzle-orm/postgres-js";

/** What {@link prepareSelect} reads of Drizzle's prepared postgres.js query (Drizzle 0.45). */
interface PostgresJsQueryParts {
  client: {
    unsafe(
      text: string,
      params: unknown[],
      options: { prepare: boolean },
    ): { values(): Promise<unknown[][]> };
  };
  queryString: string;
  params: unknown[];
  logger: { logQuery(text: string, params: unknown[]): void };
  prepare: boolean;
  fields?: Array<{ path: string[]; field: unknown }>;
  customResultMapper?: unknown;
  cache?: unknown;
}

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
 * part read here is refused when prepared (an Error naming the part), never run past.
 */
export function prepareSelect<P extends Executable>(
  query: { prepare(name: string): P },
  name: string,
): Pick<P, "execute"> {
  const prepared = query.prepare(name);
  const lean = leanExecute(prepared);
  return { execute: (lean ?? prepared.execute.bind(prepared)) as P["execute"] };
}

/** What each part read must be; a Drizzle that changed them is refused, not run past. */
const EXPECTED: Record<keyof PostgresJsQueryParts, (v: unknown) => boolean> = {
  client: (v) => typeof (v as { unsafe?: unknown } | undefined)?.unsafe === "function",
  queryString: (v) => typeof v === "string",
  params: Array.isArray,
  logger: (v) => typeof (v as { logQuery?: unknown } | undefined)?.logQuery === "function",
  prepare: (v) => typeof v === "boolean",
  fields: (v) => v === undefined || Array.isArray(v),
  customResultMapper: (v) => v === undefined || typeof v === "function",
  cache: () => true,
};

/**
 * The parts of Drizzle's prepared query this reads, checked once when prepared: a Drizzle whose
 * `PostgresJsPreparedQuery` renamed or dropped one (this is written against 0.45's) fails here,
 * loudly, instead of failing every call or quietly answering rows its `execute` would not.
 */
function readParts(prepared: Executable): PostgresJsQueryParts {
  for (const [part, ok] of Object.entries(EXPECTED)) {
    if (!(part in prepared) || !ok((prepared as unknown as Record<string, unknown>)[part]))
      throw new Error(
        `prepareSelect: drizzle-orm's PostgresJsPreparedQuery has no usable \`${part}\` (written against drizzle-orm 0.45)`,
      );
  }
  return prepared as unknown as PostgresJsQueryParts;
}

function leanExecute(prepared: Executable): Executable["execute"] | undefined {
  if (!is(prepared, PostgresJsPreparedQuery)) return undefined;
  const parts = readParts(prepared);
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
