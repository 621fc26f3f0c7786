import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminUrl, uniqueName } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from "./postgres.js";
import { dropServiceDatabase, provisionServiceDatabase } from "./provision.js";

/** The embedded server `meshctl up` runs without a database URL, started the same way. */
let embedded: EmbeddedPostgresHandle | undefined;
const home = mkdtempSync(join(tmpdir(), "mw-provision-"));
chmodSync(home, 0o755); // as root the server runs as the OS user postgres
beforeAll(async () => {
  embedded = await startEmbeddedPostgres({ home, autoPort: true, say: () => {} });
});
afterAll(async () => {
  await embedded?.stop();
  rmSync(home, { recursive: true, force: true });
});

const servers = [
  { server: "the machine's Postgres server", url: () => adminUrl(), passwords: false },
  { server: "the embedded server of meshctl up", url: () => embedded?.adminUrl as string, passwords: true },
];

describe.each(servers)("a database and a role per service on $server", ({ url: adminUrl, passwords }) => {
  const prefix = uniqueName("mwp");
  const created: string[] = [];
  afterAll(async () => {
    for (const name of created) await dropServiceDatabase(adminUrl(), name);
  });

  it("lets each service's role reach its own database only", async () => {
    const users = await provisionServiceDatabase(adminUrl(), "users", { prefix });
    const orders = await provisionServiceDatabase(adminUrl(), "orders", { prefix });
    created.push(users.database, orders.database);

    // Own database: connect, create a table (the role owns its database), use it.
    const own = postgres(users.url, { max: 1, onnotice: () => {} });
    try {
      await own`create table t (id int primary key)`;
      await own`insert into t values (1)`;
      expect(await own`select count(*)::int as n from t`).toEqual([{ n: 1 }]);
    } finally {
      await own.end();
    }

    // The users role asking for the orders database is refused by the server.
    const crossUrl = new URL(users.url);
    crossUrl.pathname = `/${orders.database}`;
    const cross = postgres(crossUrl.toString(), { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await expect(cross`select 1`).rejects.toMatchObject({
        code: "42501",
        message: expect.stringContaining("permission denied for database"),
      });
    } finally {
      await cross.end();
    }

    if (passwords) {
      // Password logins: the orders role with the users role's password is refused too.
      const asOrders = new URL(users.url);
      asOrders.username = orders.role;
      asOrders.pathname = `/${orders.database}`;
      const impostor = postgres(asOrders.toString(), { max: 1, onnotice: () => {}, connect_timeout: 5 });
      try {
        await expect(impostor`select 1`).rejects.toMatchObject({ code: "28P01" });
      } finally {
        await impostor.end();
      }
    }
  });

  it("is idempotent and keeps a given password", async () => {
    const first = await provisionServiceDatabase(adminUrl(), "users", { prefix, password: "pw-1" });
    const again = await provisionServiceDatabase(adminUrl(), "users", { prefix, password: "pw-1" });
    expect(again.url).toBe(first.url);
    const sql = postgres(again.url, { max: 1, onnotice: () => {} });
    try {
      expect(await sql`select current_user as u`).toEqual([{ u: first.role }]);
    } finally {
      await sql.end();
    }
  });
});
