import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, type LocalPostgres, startLocalPostgres } from "@meshwork/local-postgres";
import { startNatsServer, type TestNatsServer } from "@meshwork/testing";

/**
 * The NATS and Postgres servers of one run, started here and private to it: the run stops and
 * restarts them, which it must never do to the machine's shared servers. Postgres keeps its data
 * directory and its port across a restart, NATS its store directory and port.
 */
export interface PrivateInfra {
  natsUrl: string;
  /** The superuser URL the mesh's databases are created through. */
  postgresUrl: string;
  restartNats(downMs: number): Promise<void>;
  restartPostgres(downMs: number): Promise<void>;
  /** Stops both servers and removes their directories. Idempotent. */
  remove(): Promise<void>;
}

/**
 * What must stop if the driver is told to stop (SIGINT, SIGTERM) in the middle of a run: each
 * run adds its clean-up here and removes it when it has run.
 */
export const cleanups = new Set<() => Promise<void>>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startPrivateInfra(say: (line: string) => void = () => {}): Promise<PrivateInfra> {
  const dir = mkdtempSync(join(tmpdir(), "meshwork-chaos-"));
  chmodSync(dir, 0o755); // as root the server runs as the OS user postgres, which must enter it
  const dataDir = join(dir, "postgres");
  let nats: TestNatsServer | undefined;
  let pg: LocalPostgres | undefined;
  const removed = { done: false };
  const remove = async () => {
    if (removed.done) return;
    removed.done = true;
    await Promise.allSettled([nats?.remove(), pg?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    nats = await startNatsServer();
    const port = await freePort();
    const startPg = async () => {
      const started = await startLocalPostgres({ dataDir, port, ephemeral: true, say });
      if (started.port !== port) {
        await started.stop();
        throw new Error(`private Postgres came back on port ${started.port}, not ${port}`);
      }
      return started;
    };
    pg = await startPg();
    const natsServer = nats;
    const postgresUrl = pg.adminUrl;
    return {
      natsUrl: natsServer.url,
      postgresUrl,
      async restartNats(downMs) {
        await natsServer.stop();
        await sleep(downMs);
        await natsServer.start();
      },
      async restartPostgres(downMs) {
        await pg?.stop();
        await sleep(downMs);
        pg = await startPg();
      },
      remove,
    };
  } catch (err) {
    await remove();
    throw err;
  }
}
