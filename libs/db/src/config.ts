import { z } from "zod";

/** Default of `DB_POOL_WAIT_TIMEOUT_MS`. */
export const DEFAULT_POOL_WAIT_TIMEOUT_MS = 5_000;

/**
 * The database settings of a service, as a zod shape to spread into its config schema.
 * With no `DATABASE_URL`, the service runs on embedded PGlite in `DATA_DIR`.
 */
export function databaseEnvShape(defaults: { dataDir: string }) {
  return {
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
      .optional(),
    DATA_DIR: z.string().min(1).default(defaults.dataDir),
    DB_POOL_MAX: z.coerce.number().int().positive().default(10),
    DB_POOL_IDLE_TIMEOUT_S: z.coerce.number().int().min(0).default(30),
    DB_POOL_MAX_LIFETIME_S: z.coerce
      .number()
      .int()
      .min(0)
      .default(30 * 60),
    DB_CONNECT_TIMEOUT_S: z.coerce.number().int().positive().default(10),
    /**
     * Longest wait of a transaction, or of a single query outside one, for a pooled connection
     * (ms) before it fails UNAVAILABLE;
     * 0 waits forever. A few seconds: more than a healthy pool ever makes anyone wait, and less
     * than a caller's deadline, so an exhausted or deadlocked pool is seen as such.
     */
    DB_POOL_WAIT_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_POOL_WAIT_TIMEOUT_MS),
    /**
     * Run Drizzle's queries as named prepared statements (parsed once per connection). Turn off
     * behind a pooler in transaction mode (PgBouncer), where a statement prepared on one server
     * connection is missing on the next.
     */
    DB_PREPARE: z.stringbool().default(true),
  };
}

type DatabaseEnv = z.infer<z.ZodObject<ReturnType<typeof databaseEnvShape>>>;

/** Where a service's data lives and how its pool behaves. */
export interface DatabaseConfig {
  /** A Postgres server URL; undefined means embedded PGlite in `dataDir`. */
  url: string | undefined;
  /** PGlite's data directory (used only without `url`). */
  dataDir: string;
  /**
   * Prepared statements for every query on a server (default true): one round trip per query
   * instead of two, and no parse and plan each time. See `DB_PREPARE`.
   */
  prepare?: boolean;
  pool: {
    /** Most connections open at once. */
    max: number;
    /** Close a connection idle this long (s); 0 keeps it. */
    idleTimeoutS: number;
    /** Recycle a connection after this long (s); 0 keeps it forever. */
    maxLifetimeS: number;
    /** Give up opening a connection after this long (s). */
    connectTimeoutS: number;
    /**
     * Fail a transaction or a single query UNAVAILABLE when it waited this long (ms) for a
     * connection; 0 waits
     * forever. Default {@link DEFAULT_POOL_WAIT_TIMEOUT_MS}.
     */
    waitTimeoutMs?: number;
  };
}

/** Maps the parsed environment to a {@link DatabaseConfig}. */
export function toDatabaseConfig(env: DatabaseEnv): DatabaseConfig {
  return {
    url: env.DATABASE_URL,
    dataDir: env.DATA_DIR,
    prepare: env.DB_PREPARE,
    pool: {
      max: env.DB_POOL_MAX,
      idleTimeoutS: env.DB_POOL_IDLE_TIMEOUT_S,
      maxLifetimeS: env.DB_POOL_MAX_LIFETIME_S,
      connectTimeoutS: env.DB_CONNECT_TIMEOUT_S,
      waitTimeoutMs: env.DB_POOL_WAIT_TIMEOUT_MS,
    },
  };
}
