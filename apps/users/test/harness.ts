import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { deleteNamespaceStreams } from "@meshwork/events/testing";
import type { Service } from "@meshwork/runtime";
import { testIdentity } from "@meshwork/runtime/testing";
import { createLogger } from "@meshwork/telemetry";
import { createTestDatabase, uniqueName, waitFor } from "@meshwork/testing";
import { loadConfig } from "../src/config.js";
import { createUsersService } from "../src/server.js";

/** Where a test's users database lives: embedded PGlite, or a fresh database on the real server. */
export type Backend = "pglite" | "postgres";

export interface Storage {
  /** Environment for the service: its database and a NATS namespace of its own. */
  env: Record<string, string>;
  namespace: string;
  /** Where the service writes a generated bootstrap secret. */
  bootstrapFile: string;
  remove(): Promise<void>;
}

/**
 * Creates empty storage for one test suite: a temp PGlite directory or a new Postgres database,
 * and a unique events namespace on the machine's NATS (its streams are deleted by `remove`).
 */
export async function createStorage(backend: Backend): Promise<Storage> {
  const namespace = `${uniqueName("t")}.`;
  // Every stream of the namespace: USERS, and what the service declared beside it (its dead
  // letters, and any legacy stream a test created), so nothing is left on the shared server.
  const removeStreams = () => deleteNamespaceStreams(namespace);
  // A generated bootstrap secret goes here, not into the working directory's .meshwork.
  const dir = mkdtempSync(join(tmpdir(), "mw-users-"));
  const bootstrapFile = join(dir, "secrets", "bootstrap-secret");
  if (backend === "postgres") {
    const db = await createTestDatabase("mw_users");
    return {
      namespace,
      bootstrapFile,
      env: {
        DATABASE_URL: db.url,
        EVENTS_NAMESPACE: namespace,
        DISCOVERY: "static",
        USERS_BOOTSTRAP_SECRET_OUT: bootstrapFile,
      },
      remove: async () => {
        await db.drop();
        await removeStreams();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  return {
    namespace,
    bootstrapFile,
    env: {
      DATA_DIR: join(dir, "data"),
      EVENTS_NAMESPACE: namespace,
      DISCOVERY: "static",
      USERS_BOOTSTRAP_SECRET_OUT: bootstrapFile,
    },
    remove: async () => {
      rmSync(dir, { recursive: true, force: true });
      await removeStreams();
    },
  };
}

/**
 * The gateway's key as the users service of every test trusts it (`IDENTITY_TRUST`): tests call
 * the service's port with `identity.headers("users", subject, roles)` where the gateway would.
 */
export const identity = testIdentity(["gateway"]);

/** A users service started in this process on port 0, with its log lines captured. */
export interface RunningUsers {
  service: Service;
  url: string;
  port: number;
  logs: string[];
}

export async function startUsers(
  storage: Storage,
  extraEnv: Record<string, string> = {},
): Promise<RunningUsers> {
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split("\n").filter(Boolean));
      cb();
    },
  });
  const config = loadConfig({
    PORT: "0",
    HEALTH_CHECK_INTERVAL_MS: "1000",
    IDENTITY_TRUST: identity.trustText,
    ...storage.env,
    ...extraEnv,
  });
  const service = await createUsersService(config, {
    logger: createLogger({ service: "users", destination }),
  });
  // A start that fails (a key that cannot be opened) leaves nothing listening behind.
  const { port, url } = await service.start().catch(async (err: unknown) => {
    await service.shutdown().catch(() => {});
    throw err;
  });
  await waitFor(() => service.health.serving, { what: "users to be SERVING" });
  return { service, url, port, logs };
}
