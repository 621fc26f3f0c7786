import { is, type SQL, Table } from "drizzle-orm";
import { PostgresJsPreparedQuery, PostgresJsSession } from "drizzle-orm/postgres-js";
import { npmVersion } from "drizzle-orm/version";

// The one reader of Drizzle's internals for prepareSelect and prepareStatement (both take a
// statement's text, parameters and column decoders from Drizzle's prepared postgres.js query, so
// a call skips Drizzle's per-call work). Written against drizzle-orm 0.45; the shape read here is
// pinned by drizzle-internals.test.ts.
//
// One behaviour when a part is not as expected: an Error naming the part, the installed
// drizzle-orm version and the version this was written against, thrown when the statement is
// prepared (prepareSelect) or first run (prepareStatement). Not a quiet fall back to Drizzle's
// own execute: a changed internal may also mean a changed meaning (the rows or parameters read
// wrong), and a quiet fall back would lose the measured CPU per call with no one told. The pinning
// test fails first, in CI, on any drizzle-orm whose shape moved; this error is what a run past it
// would see. What is not a shape change (PGlite, a nested selection, a Drizzle cache or logger, a
// custom result mapper) still runs Drizzle's own execute, as documented by each caller.

/** The drizzle-orm version the reads below were written against. */
const WRITTEN_AGAINST = "0.45";

/** Drizzle's internals are not what this was written against (see the module comment). */
export class DrizzleShapeError extends Error {
  override name = "DrizzleShapeError";
  constructor(caller: string, where: string, part: string) {
    super(
      `${caller}: drizzle-orm ${npmVersion}'s ${where} has no usable \`${part}\` (written against drizzle-orm ${WRITTEN_AGAINST}; see libs/db/src/drizzle-internals.ts)`,
    );
  }
}

/** postgres.js's `unsafe`, as Drizzle holds it (the pool, or a transaction's connection). */
export interface UnsafeClient {
  unsafe(
    text: string,
    params: unknown[],
    options: { prepare: boolean },
  ): PromiseLike<unknown[]> & {
    values(): Promise<unknown[][]>;
  };
}

/** What is read of Drizzle's prepared postgres.js query (`PostgresJsPreparedQuery`). */
export interface PreparedQueryParts {
  client: UnsafeClient;
  queryString: string;
  /** Values, `Param`s (with their encoder) and `Placeholder`s, in the order of `$1`, `$2`, ... */
  params: unknown[];
  logger: { logQuery(text: string, params: unknown[]): void };
  /** Whether Drizzle asks postgres.js for a named prepared statement. */
  prepare: boolean;
  /** The selection, flattened (undefined: the statement returns no rows). */
  fields?: Array<{ path: string[]; field: unknown }>;
  customResultMapper?: unknown;
  cache?: unknown;
}

const hasFunction = (name: string) => (v: unknown) =>
  typeof (v as Record<string, unknown> | undefined)?.[name] === "function";

/** What each part read must be. */
const QUERY_PARTS: Record<keyof PreparedQueryParts, (v: unknown) => boolean> = {
  client: hasFunction("unsafe"),
  queryString: (v) => typeof v === "string",
  params: Array.isArray,
  logger: hasFunction("logQuery"),
  prepare: (v) => typeof v === "boolean",
  fields: (v) => v === undefined || Array.isArray(v),
  customResultMapper: (v) => v === undefined || typeof v === "function",
  cache: () => true,
};

/**
 * The parts of Drizzle's prepared query, or undefined when it is not a postgres.js one (PGlite).
 * Throws {@link DrizzleShapeError} when one is missing or not of the type expected.
 */
export function readPreparedQuery(prepared: unknown, caller: string): PreparedQueryParts | undefined {
  if (!is(prepared, PostgresJsPreparedQuery)) return undefined;
  const parts = prepared as unknown as Record<string, unknown>;
  for (const [part, ok] of Object.entries(QUERY_PARTS)) {
    if (!(part in parts) || !ok(parts[part]))
      throw new DrizzleShapeError(caller, "PostgresJsPreparedQuery", part);
  }
  return prepared as unknown as PreparedQueryParts;
}

/** What is read of the session behind a Drizzle postgres.js database or transaction. */
export interface SessionParts {
  client: UnsafeClient;
  /** Drizzle's cache (`NoopCache` unless configured). */
  cache: unknown;
  /** Drizzle's logger (`NoopLogger` unless configured). */
  logger: unknown;
}

/**
 * The session of a Drizzle database or transaction, or undefined when it is not a postgres.js one
 * (PGlite). Throws {@link DrizzleShapeError} when its client has no `unsafe`.
 */
export function readSession(q: unknown, caller: string): SessionParts | undefined {
  const session = (q as { session?: unknown } | undefined)?.session;
  if (!session || !is(session, PostgresJsSession)) return undefined;
  const parts = session as unknown as SessionParts;
  if (!hasFunction("unsafe")(parts.client))
    throw new DrizzleShapeError(caller, "PostgresJsSession", "client");
  return parts;
}

/** A selected SQL expression's decoder (`sql<T>\`...\``, `.mapWith()`). Throws {@link DrizzleShapeError}. */
export function sqlDecoder(field: SQL, caller: string): { mapFromDriverValue(v: unknown): unknown } {
  const { decoder } = field as unknown as { decoder?: unknown };
  if (!hasFunction("mapFromDriverValue")(decoder)) throw new DrizzleShapeError(caller, "SQL", "decoder");
  return decoder as { mapFromDriverValue(v: unknown): unknown };
}

/** The table of a built insert or update (`config.table`). Throws {@link DrizzleShapeError}. */
export function builtTable(built: unknown, caller: string): Table {
  const table = (built as { config?: { table?: unknown } }).config?.table;
  if (!is(table, Table)) throw new DrizzleShapeError(caller, "PgInsertBase/PgUpdateBase", "config.table");
  return table;
}
