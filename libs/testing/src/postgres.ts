import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { MACHINE_POSTGRES_URL } from "./embedded-postgres.js";
import { waitFor } from "./wait.js";

/**
 * The maintenance connection tests use to create and drop their own databases. Override with
 * `MESHWORK_TEST_PG_URL`; the default is this machine's trust-auth server. When that server does
 * not answer, the vitest global setup starts an embedded one and sets `MESHWORK_TEST_PG_URL`
 * ({@link resolveTestPostgres}).
 */
export function adminUrl(): string {
  return process.env.MESHWORK_TEST_PG_URL ?? MACHINE_POSTGRES_URL;
}

/** A uniquely named, throw-away name: `prefix_<12 hex>`; safe as an identifier. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString("hex")}`;
}

/** A database created for one test; `drop()` removes it (closing its connections first). */
export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Creates a uniquely named database on the real Postgres server. */
export async function createTestDatabase(prefix = "mw_test"): Promise<TestDatabase> {
  const name = uniqueName(prefix);
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      const a = postgres(adminUrl(), { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

/**
 * Resolves when a statement of `database` waits for a lock (`pg_stat_activity`), for tests that
 * need a second transaction queued behind a first before they let the first go on.
 */
export async function waitForLockWaiter(database: TestDatabase, what: string): Promise<void> {
  const sql = postgres(database.url, { max: 1, onnotice: () => {} });
  try {
    await waitFor(
      async () => {
        const [r] = await sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'`;
        return (r?.n ?? 0) > 0;
      },
      { timeoutMs: 20_000, intervalMs: 10, what },
    );
  } finally {
    await sql.end();
  }
}
