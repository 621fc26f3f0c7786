import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEMO_PASSWORD, SEED } from "@meshwork/legacy";
import { adminUrl, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { dropMeshDatabases, removeMeshStreams } from "../test/mesh-cleanup.js";
import { legacyDatabaseUrlFile } from "./strangler.js";

// Issue 19, the orders' cutover end to end on real processes: `meshctl up` starts legacy, users,
// inventory, payments, orders, notifications and the gateway (its strangler in front of legacy),
// and `meshctl demo strangler` walks the catalogue's and then the orders' move against it. A
// legacy customer's order, placed with their legacy session at 100%, must come from the mesh's
// saga (the gateway exchanges the session), reach legacy's tables (the order sync), read the same
// through the shadowed GetOrder, and go back to legacy at 0%. The other way (legacy -> orders):
// the order placed in legacy at 0% reaches the orders service, and a seeded legacy order the
// orders service has lost is brought back by the demo's backfill; the cut-over GetOrder and
// ListOrders answer both as legacy does, a second backfill changes nothing, and the mesh's order
// is not captured back.
const root = fileURLToPath(new URL("../../../", import.meta.url));
const meshctl = join(root, "tools/meshctl/dist/main.js");

describe("the orders' cutover on a whole mesh (meshctl up, meshctl demo strangler)", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  const prefix = uniqueName("mwso");
  const namespace = `${prefix}.`;
  afterAll(async () => {
    await dropMeshDatabases(prefix);
    await removeMeshStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });

  it("a legacy customer's order is placed by the mesh, shows up in legacy, reads without a diff, and goes back to legacy at 0%", async () => {
    const env = { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace };
    const up = startProcess(
      process.execPath,
      [meshctl, "up", "--ports", "auto", "--database-url", adminUrl(), "--db-prefix", prefix],
      { env },
    );
    try {
      const started = performance.now();
      await up.waitForLine((l) => l === "meshctl | the mesh is up; Ctrl-C stops it", 480_000);
      const row = up.lines.find((l) => /^gateway\s+127\.0\.0\.1:\d+\s+LIVE/.test(l)) ?? "";
      const gateway = `http://${row.split(/\s+/)[1]}`;
      const admin = `http://${/admin (\S+)/.exec(row)?.[1]}`;
      console.log(`mesh up in ${Math.round(performance.now() - started)} ms`);

      // Ada's seeded order (placed in legacy before the migration) reaches orders through the
      // capture; it is taken out again so that only the demo's backfill can bring it back.
      const ordersDb = new URL(adminUrl());
      ordersDb.pathname = `/${prefix}_orders`;
      const osql = postgres(ordersDb.toString(), { max: 1, onnotice: () => {} });
      const ada = SEED.users[0]!;
      const seeded = SEED.orders[0]!.id;
      const count = async (q: ReturnType<typeof osql>) => ((await q) as unknown as { n: number }[])[0]?.n;
      try {
        await waitFor(
          async () => (await count(osql`select count(*)::int as n from orders where id = ${seeded}`)) === 1,
          { what: "the seeded legacy order in orders (the capture)", timeoutMs: 60_000 },
        );
        await osql`delete from legacy_order_sync where order_id = ${seeded}`;
        await osql`delete from orders where id = ${seeded}`;
      } finally {
        await osql.end();
      }

      const demo = startProcess(
        process.execPath,
        [meshctl, "demo", "strangler", "--gateway", gateway, "--gateway-admin", admin],
        { env },
      );
      const code = await demo.exited;
      const said = demo.lines.join("\n");
      console.log(said);
      expect(code, said).toBe(0);
      expect(said).toMatch(/ListProducts: 0 of 20 shadowed answers differed/);
      expect(said).toMatch(/POST \/api\/orders with the legacy session at 100% -> 200 from the new side/);
      expect(said).toMatch(/legacy saw 0 of them/);
      expect(said).toMatch(/lists it \d+ ms later/);
      expect(said).toMatch(/GET \/api\/orders\/\{id\}, shadowed -> 200 from the legacy side/);
      expect(said).toMatch(/GetOrder: 0 of [1-9]\d* shadowed answers differed/);
      expect(said).toMatch(/back at 0%: POST \/api\/orders -> 200 from the legacy side/);
      expect(said).toMatch(/verdict: OK/);
      // Legacy -> orders: the order placed at 0% by legacy's handler, read on both sides.
      expect(said).toMatch(/legacy's order [0-9a-f-]{36} is in the orders service \d+ ms later/);
      expect(said).toMatch(/GET \/api\/orders\/\{id\}: legacy and the new side answer the same/);
      expect(said).toMatch(/in legacy's order \(same\), the legacy order the same/);
      expect(said.match(/GetOrder: 0 of [1-9]\d* shadowed answers differed/g)).toHaveLength(2);

      // Legacy's own tables: the mesh's order under its id and `mesh:<id>` (the sync wrote it,
      // legacy's handler did not), and the one order placed at 0% by legacy's handler.
      const orderId = /order ([0-9a-f-]{36}) /.exec(said)?.[1];
      expect(orderId).toBeDefined();
      const sql = postgres(readFileSync(legacyDatabaseUrlFile(home), "utf8").trim(), { max: 1 });
      try {
        const [mine] = await sql<{ user_id: string; idempotency_key: string }[]>`
          SELECT user_id, idempotency_key FROM orders WHERE id = ${orderId!}`;
        expect(mine?.idempotency_key).toBe(`mesh:${orderId}`);
        const byLegacy = await sql`
          SELECT id FROM orders WHERE user_id = ${mine!.user_id} AND idempotency_key NOT LIKE 'mesh:%'`;
        expect(byLegacy).toHaveLength(1);
        // The mesh's order is not captured back into the mesh (no loop, no duplicate).
        const captured = await sql`SELECT seq FROM cdc_outbox WHERE aggregate_id = ${orderId!}`;
        expect(captured).toHaveLength(0);
      } finally {
        await sql.end();
      }
      await legacyOrdersOnBothSides({
        gateway,
        admin,
        home,
        env,
        prefix,
        ada,
        password: DEMO_PASSWORD,
        seeded,
        orderId: orderId!,
      });
      expect(await up.stop("SIGINT")).toBe(0);
    } finally {
      if (up.child.exitCode === null) await up.stop("SIGKILL");
    }
  }, 900_000);
});

/** A route's settings through the gateway's admin API (what `meshctl strangler set/shadow` send). */
async function route(admin: string, name: string, body: Record<string, unknown>) {
  const res = await fetch(`${admin}/strangler/routes/${name}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { ignore?: string[] };
}

/**
 * The documented mapping of times: the same instants, printed by legacy with milliseconds
 * always (`09:09:00.000Z`) and by the transcoder in proto3 JSON (`09:09:00Z` for a whole second).
 */
function sameInstants(json: unknown): unknown {
  return JSON.parse(JSON.stringify(json), (_k, v) =>
    typeof v === "string" && /^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/.test(v) ? new Date(v).toISOString() : v,
  );
}

/** `GET /api/users/{id}/orders` with ListOrders at `weight`% (one sticky user). */
async function listAt(gateway: string, admin: string, weight: number, userId: string, token: string) {
  const set = await fetch(`${admin}/strangler/routes/ListOrders`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ weight }),
  });
  expect(set.status).toBe(200);
  const res = await fetch(`${gateway}/api/users/${userId}/orders`, {
    headers: { authorization: `Bearer ${token}`, cookie: "mw_sticky=legacy-orders-test" },
  });
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers read in assertions
  return { side: res.headers.get("x-meshwork-side"), status: res.status, body: (await res.json()) as any };
}

/**
 * After the demo: Ada's seeded order, taken out of orders before the demo, is back (the demo's
 * backfill) and ListOrders answers the same JSON on both sides; a second backfill changes
 * nothing; the mesh's own order is held once, as the mesh's (no legacy sync row).
 */
async function legacyOrdersOnBothSides(o: {
  gateway: string;
  admin: string;
  home: string;
  env: Record<string, string>;
  prefix: string;
  ada: { id: string; email: string };
  password: string;
  seeded: string;
  orderId: string;
}) {
  const ordersDb = new URL(adminUrl());
  ordersDb.pathname = `/${o.prefix}_orders`;
  const osql = postgres(ordersDb.toString(), { max: 1, onnotice: () => {} });
  try {
    const login = await fetch(`${o.gateway}/api/login`, {
      method: "POST",
      headers: { "content-type": "application/json", cookie: "mw_sticky=legacy-orders-test" },
      body: JSON.stringify({ email: o.ada.email, password: o.password }),
    });
    expect(login.status).toBe(200);
    const token = ((await login.json()) as { access_token: string }).access_token;
    const legacy = await listAt(o.gateway, o.admin, 0, o.ada.id, token);
    const mesh = await listAt(o.gateway, o.admin, 100, o.ada.id, token);
    expect([legacy.side, mesh.side]).toEqual(["legacy", "new"]);
    expect(legacy.body.orders.map((x: { id: string }) => x.id)).toContain(o.seeded);
    expect(sameInstants(mesh.body)).toEqual(sameInstants(legacy.body));
    await shadowedGetOrder(o.gateway, o.admin, o.seeded, token);
    const rows = async () =>
      // Legacy's orders only: the mesh's own may still be moving through their saga.
      osql<{ id: string; status: string; updated_at: Date }[]>`
        SELECT o.id, o.status, o.updated_at FROM orders o JOIN legacy_order_sync s ON s.order_id = o.id
        ORDER BY o.id`;
    const before = await rows();

    const again = startProcess(
      process.execPath,
      [meshctl, "strangler", "backfill", "--gateway", o.gateway, "--gateway-admin", o.admin],
      { env: o.env },
    );
    const code = await again.exited;
    console.log(again.lines.join("\n"));
    expect(code, again.lines.join("\n")).toBe(0);
    expect(again.lines.join("\n")).toMatch(/\d+ orders snapshotted; the orders service applied them/);
    expect(await rows()).toEqual(before);
    expect(sameInstants((await listAt(o.gateway, o.admin, 100, o.ada.id, token)).body)).toEqual(
      sameInstants(legacy.body),
    );

    const mine = await osql`SELECT id FROM orders WHERE id = ${o.orderId}`;
    expect(mine).toHaveLength(1);
    expect(await osql`SELECT order_id FROM legacy_order_sync WHERE order_id = ${o.orderId}`).toHaveLength(0);
    await listAt(o.gateway, o.admin, 0, o.ada.id, token);
  } finally {
    await osql.end();
  }
}

/**
 * The seeded legacy order read through a shadowed GetOrder, with the times compared too (the
 * route's rules without the default time ignores): the new side's copy differs in nothing.
 */
async function shadowedGetOrder(gateway: string, admin: string, orderId: string, token: string) {
  const state = await route(admin, "GetOrder", { weight: 0 });
  const ignore = (state.ignore ?? []).filter((g) => !/create_time|update_time/.test(g));
  await route(admin, "GetOrder", { ignore, shadow: "on" });
  await fetch(`${admin}/strangler/routes/GetOrder/diffs`, { method: "DELETE" });
  const res = await fetch(`${gateway}/api/orders/${orderId}`, {
    headers: { authorization: `Bearer ${token}`, cookie: "mw_sticky=legacy-orders-test" },
  });
  expect([res.status, res.headers.get("x-meshwork-side")]).toEqual([200, "legacy"]);
  const diffs = await waitFor(
    async () => {
      const d = (await (await fetch(`${admin}/strangler/routes/GetOrder/diffs`)).json()) as {
        compared: number;
        differed: number;
        samples?: unknown[];
      };
      return d.compared >= 1 ? d : undefined;
    },
    { what: "the shadowed GetOrder to be compared", timeoutMs: 10_000 },
  );
  expect(diffs, JSON.stringify(diffs)).toMatchObject({ compared: 1, differed: 0 });
  await route(admin, "GetOrder", { shadow: "off" });
}
