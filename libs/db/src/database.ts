import { mkdirSync } from "node:fs";
import type { Telemetry } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import { type SQL, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { type DatabaseConfig, DEFAULT_POOL_WAIT_TIMEOUT_MS } from "./config.js";
import {
  countingWaits,
  createPoolProbe,
  type PoolProbe,
  poolApplicationName,
  registerPoolMetrics,
} from "./pool-metrics.js";
import { instrumentPglite, instrumentPostgres } from "./tracing.js";

/** A Drizzle database over either driver; repositories are written against this type. */
export type Database<TSchema extends Record<string, unknown>> = PgDatabase<PgQueryResultHKT, TSchema>;

/**
 * A transaction of any service's database, for infrastructure that writes its own tables inside
 * a service's transaction (the outbox, the inbox).
 */
// biome-ignore lint/suspicious/noExplicitAny: any schema by design
export type AnyTransaction = PgTransaction<PgQueryResultHKT, any, any>;

/**
 * What a repository needs to run queries: satisfied by a database and by any transaction, so one
 * repository works inside a use case's transaction and outside it.
 */
export type Queryable = Pick<AnyTransaction, "select" | "insert" | "update" | "delete" | "execute">;

/** A transaction of a {@link Database}. */
export type Transaction<TSchema extends Record<string, unknown>> = PgTransaction<PgQueryResultHKT, TSchema>;

/** An open database of one service. */
export interface DatabaseHandle<TSchema extends Record<string, unknown>> {
  db: Database<TSchema>;
  /** `postgres` (a server through a postgres.js pool) or `pglite` (embedded). */
  driver: "postgres" | "pglite";
  /** Where the data is, for status tables: the URL without its password, or the directory. */
  location: string;
  /** Applies the committed drizzle-kit migrations in `folder` (idempotent). */
  migrate(folder: string): Promise<void>;
  /** Runs `select 1`; rejects while the database does not answer. */
  ping(): Promise<void>;
  /**
   * Subscribes to `LISTEN channel` (on a dedicated connection for postgres.js, which re-listens
   * after a reconnect). Returns the function that unsubscribes.
   */
  listen(
    channel: string,
    onNotify: (payload: string) => void,
    /**
     * Called each time the LISTEN is in place: once at first, and again after postgres.js
     * re-established it on a new connection. Notifications sent in between are lost, so a
     * listener that must not miss a change re-reads the state here.
     */
    onListen?: () => void,
  ): Promise<() => Promise<void>>;
  /** Closes the pool (waiting for queries in flight, up to 5 s) or the PGlite instance. */
  close(): Promise<void>;
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

/** How a database handle reports what it does. */
export interface DatabaseObservability {
  /**
   * Records a CLIENT span per statement (`db.system`, `db.operation.name`, `db.collection.name`,
   * `db.query.text` without parameter values) and a span per transaction, parent of its
   * statements. Default: the process's tracer (`processTracer()`: the service's once its
   * telemetry started). With the id-only tracer (nothing exported) no span is made at all.
   */
  telemetry?: Pick<Telemetry, "tracer">;
  /**
   * Where the pool says, once per episode, that transactions are refused for want of a free
   * connection (warn) and that one got a connection again (info). Default: a JSON line on stderr.
   */
  logger?: {
    warn(fields: Record<string, unknown>, msg: string): void;
    info(fields: Record<string, unknown>, msg: string): void;
  };
}

const stderrLogger = {
  warn: (fields: Record<string, unknown>, msg: string) =>
    process.stderr.write(`${JSON.stringify({ level: "warn", ...fields, msg })}\n`),
  info: (fields: Record<string, unknown>, msg: string) =>
    process.stderr.write(`${JSON.stringify({ level: "info", ...fields, msg })}\n`),
};

/**
 * Opens a service's database: a postgres.js pool with the configured limits when `config.url`
 * is set, otherwise PGlite in `config.dataDir` (created if missing), so a service needs no
 * database server to run. Both speak the same SQL and run the same migrations, and both trace
 * their statements (see {@link DatabaseObservability}).
 *
 * On a server, Drizzle's queries run as named prepared statements unless `config.prepare` is
 * false: Drizzle 0.45 asks postgres.js for an unnamed statement unless a query was
 * `.prepare(name)`d, and postgres.js then sends each parameterised query in two round trips
 * (Parse + Describe, then Bind + Execute) and Postgres parses and plans it every time; prepared,
 * a repeated query is one round trip (Bind + Execute) on a cached statement. (Drizzle issue
 * #6096.) postgres.js keeps the statements per connection and re-prepares one that a migration
 * invalidated.
 */
/** The advisory lock every instance of a service takes around its migrations. */
const MIGRATION_LOCK = "meshwork:migrations";

/**
 * Runs the migrations under a session advisory lock, on one connection of its own: instances of
 * a service starting together (a Deployment's replicas, `meshctl up --replicas`) apply them one
 * after the other, and the later ones find them applied. Without it, two instances raced on the
 * first CREATE TABLE and one failed to start (seen in the scale-out rehearsal).
 */
async function migrateLocked(url: string, connectTimeoutS: number, applicationName: string, folder: string) {
  const one = postgres(url, {
    max: 1,
    idle_timeout: 0,
    connect_timeout: connectTimeoutS,
    connection: { application_name: `${applicationName}-migrate` },
    onnotice: () => {},
  });
  try {
    await one`select pg_advisory_lock(hashtext(${MIGRATION_LOCK}))`;
    await migratePostgres(drizzlePostgres(one), { migrationsFolder: folder });
    await one`select pg_advisory_unlock(hashtext(${MIGRATION_LOCK}))`;
  } finally {
    // Closing the session also releases the lock should a migration have failed.
    await one.end({ timeout: 5 });
  }
}

export async function openDatabase<TSchema extends Record<string, unknown>>(
  config: DatabaseConfig,
  schema: TSchema,
  observe: DatabaseObservability = {},
): Promise<DatabaseHandle<TSchema>> {
  return config.url
    ? openServerDatabase(config.url, config, schema, observe)
    : openPgliteDatabase(config.dataDir, schema, observe);
}

/** A Postgres server through a postgres.js pool: waits bounded, statements traced and prepared. */
function openServerDatabase<TSchema extends Record<string, unknown>>(
  url: string,
  config: DatabaseConfig,
  schema: TSchema,
  observe: DatabaseObservability,
): DatabaseHandle<TSchema> {
  const tracer = observe.telemetry?.tracer;
  const poolName = decodeURIComponent(new URL(url).pathname.slice(1)) || "postgres";
  const applicationName = poolApplicationName(poolName);
  const client = postgres(url, {
    max: config.pool.max,
    idle_timeout: config.pool.idleTimeoutS || undefined,
    max_lifetime: config.pool.maxLifetimeS || null,
    connect_timeout: config.pool.connectTimeoutS,
    connection: { application_name: applicationName },
    onnotice: () => {},
  });
  const probe = createPoolProbe(url, applicationName, config.pool.max, config.pool.connectTimeoutS, postgres);
  const u = new URL(url);
  const logger = observe.logger ?? stderrLogger;
  const waits = countingWaits(client, probe, {
    poolName,
    waitTimeoutMs: config.pool.waitTimeoutMs ?? DEFAULT_POOL_WAIT_TIMEOUT_MS,
    onEpisode: (event, detail) =>
      event === "exhausted"
        ? logger.warn(detail, "database pool exhausted: transactions refused UNAVAILABLE")
        : logger.info(detail, "database pool has free connections again"),
  });
  const traced = instrumentPostgres(waits, {
    prepare: config.prepare !== false,
    tracer,
    attrs: {
      "db.namespace": poolName,
      "server.address": u.hostname,
      "server.port": Number(u.port || 5432),
    },
  });
  const db = drizzlePostgres(traced, { schema });
  const handle: DatabaseHandle<TSchema> = {
    db: db as unknown as Database<TSchema>,
    driver: "postgres",
    location: redact(url),
    migrate: (folder) => migrateLocked(url, config.pool.connectTimeoutS, applicationName, folder),
    ping: async () => {
      // Through the bound: on a pool whose every connection stays held, a ping fails, not hangs.
      await waits.unsafe("select 1");
    },
    listen: async (channel, onNotify, onListen) => {
      const sub = await client.listen(channel, onNotify, onListen);
      return () => sub.unlisten();
    },
    close: async () => {
      await client.end({ timeout: 5 });
      await probe.close();
    },
  };
  probes.set(handle, { probe, poolName });
  return handle;
}

/** PGlite, in process, with its data in `dataDir`. */
async function openPgliteDatabase<TSchema extends Record<string, unknown>>(
  dataDir: string,
  schema: TSchema,
  observe: DatabaseObservability,
): Promise<DatabaseHandle<TSchema>> {
  const tracer = observe.telemetry?.tracer;
  mkdirSync(dataDir, { recursive: true });
  // Loaded only here: every service imports this module, and on a Postgres server (the local
  // mesh's default too) PGlite's JavaScript cost each process ~50 ms of CPU at start for nothing.
  const [{ PGlite }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
    import("@electric-sql/pglite"),
    import("drizzle-orm/pglite"),
    import("drizzle-orm/pglite/migrator"),
  ]);
  const client = instrumentPglite(await PGlite.create(dataDir), {
    tracer,
    attrs: { "db.namespace": "postgres" },
  });
  const db = drizzlePglite(client, { schema });
  return {
    db: db as unknown as Database<TSchema>,
    driver: "pglite",
    location: dataDir,
    migrate: (folder) => migratePglite(db, { migrationsFolder: folder }),
    ping: async () => {
      await db.execute(sql`select 1`);
    },
    listen: async (channel, onNotify, onListen) => {
      // In-process: the LISTEN never drops, so it is in place once.
      const unlisten = await client.listen(channel, onNotify);
      onListen?.();
      return unlisten;
    },
    close: () => client.close(),
  };
}

const probes = new WeakMap<object, { probe: PoolProbe; poolName: string }>();

/**
 * Exports the connection pool of `database` as OpenTelemetry gauges on `meter` (a service's
 * meter, so they reach its `GET /metrics`): `db.client.connection.count` by state (`used`,
 * `idle`), `db.client.connection.pending_requests` (transactions and single statements waiting
 * for a connection) and `db.client.connection.max`, labelled with the pool name (the database's
 * name). Used and idle are the server's own count of the pool's connections, read at each
 * collection on a monitoring connection outside the pool; waiting is counted in this process. PGlite is one in-process
 * session with no pool: nothing is registered for it. Call it once per database.
 */
export function observeDatabasePool(database: DatabaseHandle<Record<string, unknown>>, meter: Meter): void {
  const pool = probes.get(database);
  if (pool) registerPoolMetrics(meter, pool.probe, pool.poolName);
}

/**
 * Runs use-case work in one transaction. Repositories take the transaction so that everything a
 * use case writes (its state change and, later, its outbox row) commits or rolls back together.
 */
export interface UnitOfWork<TSchema extends Record<string, unknown>> {
  run<T>(work: (tx: Transaction<TSchema>) => Promise<T>): Promise<T>;
}

/** Creates a {@link UnitOfWork} over `db`. */
export function createUnitOfWork<TSchema extends Record<string, unknown>>(
  db: Database<TSchema>,
): UnitOfWork<TSchema> {
  return {
    run: (work) => db.transaction((tx) => work(tx as Transaction<TSchema>)),
  };
}

/**
 * Runs one raw statement (`sql\`...\``, for what the query builder cannot say, such as a
 * data-modifying CTE) and returns its rows from either driver: postgres.js answers an array,
 * PGlite an object with `rows`. Values come as the drivers give them under Drizzle: timestamps as
 * text (map them with the column's `mapFromDriverValue`), int8 as text or a number.
 */
export async function queryRows<T extends Record<string, unknown>>(db: Queryable, query: SQL): Promise<T[]> {
  const result: unknown = await db.execute(query);
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

/** True when `err` (or its cause) is a Postgres unique-violation (23505), from either driver. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  for (
    let e: unknown = err;
    e instanceof Error || (e && typeof e === "object");
    e = (e as { cause?: unknown }).cause
  ) {
    const pg = e as { code?: string; constraint?: string; constraint_name?: string };
    if (pg.code === "23505") {
      return constraint === undefined || (pg.constraint_name ?? pg.constraint) === constraint;
    }
    if (!(e as { cause?: unknown }).cause) break;
  }
  return false;
}
