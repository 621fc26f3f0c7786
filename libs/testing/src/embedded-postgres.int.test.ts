import net from "node:net";
import { answers } from "@meshwork/local-postgres";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { MACHINE_POSTGRES_URL, resolveTestPostgres } from "./embedded-postgres.js";

/** A port nothing listens on: bound, noted, closed. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

describe("the Postgres server of a test run", () => {
  it("is an embedded server started for the run when MESHWORK_TEST_PG_URL is unset and nothing answers", async () => {
    // The detection is pointed at a closed port, so the machine's own server is left alone.
    const said: string[] = [];
    const pg = await resolveTestPostgres({
      env: { MESHWORK_TEST_PG_PROBE: `127.0.0.1:${await closedPort()}` },
      say: (l) => said.push(l),
    });
    try {
      expect(pg.origin).toBe("embedded");
      expect(pg.url).not.toBe(MACHINE_POSTGRES_URL);
      expect(said).toContainEqual(expect.stringMatching(/^embedded postgres: initialised a new cluster/));
      // What every integration test does with it: create its own database and use it.
      const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`CREATE DATABASE "fallback_check"`);
        // Throw-away data: no fsync (lighter on the shared disk of a test machine).
        expect(await admin`show fsync`).toEqual([{ fsync: "off" }]);
      } finally {
        await admin.end();
      }
      const url = new URL(pg.url);
      url.pathname = "/fallback_check";
      const db = postgres(url.toString(), { max: 1, onnotice: () => {} });
      try {
        expect(await db`select current_database() as d, version() as v`).toEqual([
          { d: "fallback_check", v: expect.stringMatching(/^PostgreSQL \d+/) },
        ]);
      } finally {
        await db.end();
      }
    } finally {
      await pg.stop();
    }
    // Stopped: its port answers no more.
    const { hostname, port } = new URL(pg.url);
    expect(await answers(hostname, Number(port))).toBe(false);
  });

  it("is the machine's server when something answers on the probed port, and MESHWORK_TEST_PG_URL when set", async () => {
    const listener = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
    const { port } = listener.address() as net.AddressInfo;
    try {
      const machine = await resolveTestPostgres({ env: { MESHWORK_TEST_PG_PROBE: `127.0.0.1:${port}` } });
      expect(machine).toMatchObject({ origin: "machine", url: MACHINE_POSTGRES_URL });
      const given = await resolveTestPostgres({
        env: {
          MESHWORK_TEST_PG_URL: "postgres://me@db.example:5432/postgres",
          MESHWORK_TEST_PG_PROBE: "127.0.0.1:1",
        },
      });
      expect(given).toMatchObject({ origin: "env", url: "postgres://me@db.example:5432/postgres" });
    } finally {
      listener.close();
    }
  });
});
