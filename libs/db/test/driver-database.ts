import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import type { DatabaseConfig } from "../src/config.js";
import { type DatabaseHandle, type DatabaseObservability, openDatabase } from "../src/database.js";

/** The two drivers a test runs on: embedded PGlite, or the real Postgres server. */
export type Driver = "pglite" | "postgres";

/** A throw-away database on one driver, opened; `close()` closes it and removes its storage. */
export interface DriverDatabase<TSchema extends Record<string, unknown>> {
  handle: DatabaseHandle<TSchema>;
  /** How it was opened: to open it again (another pool on the same data). */
  config: DatabaseConfig;
  /** The database on the server (postgres only). */
  serverDb?: TestDatabase;
  close(): Promise<void>;
}

/**
 * Opens a fresh database on `driver` (a `<name>_<hex>` database on the server, or a `<name>-`
 * temp directory for PGlite) with a small pool (3 connections).
 */
export async function openDriverDatabase<TSchema extends Record<string, unknown>>(
  driver: Driver,
  name: string,
  schema: TSchema,
  observability?: DatabaseObservability,
): Promise<DriverDatabase<TSchema>> {
  const pool = { max: 3, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 };
  let config: DatabaseConfig;
  let serverDb: TestDatabase | undefined;
  let remove: () => Promise<void>;
  if (driver === "postgres") {
    const testDb = await createTestDatabase(name);
    serverDb = testDb;
    config = { url: testDb.url, dataDir: "unused", pool };
    remove = () => testDb.drop();
  } else {
    const dataDir = mkdtempSync(join(tmpdir(), `${name}-`));
    config = { url: undefined, dataDir, pool };
    remove = async () => rmSync(dataDir, { recursive: true, force: true });
  }
  const handle = await openDatabase(config, schema, observability);
  return {
    handle,
    config,
    serverDb,
    async close() {
      await handle.close();
      await remove();
    },
  };
}
