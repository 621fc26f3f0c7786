import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { adminUrl, startProcess, uniqueName } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { dropMeshDatabases, removeMeshStreams } from "../test/mesh-cleanup.js";
import { legacyDatabaseUrlFile } from "./strangler.js";

// Issue 19, the orders' cutover end to end on real processes: `meshctl up` starts legacy, users,
// inventory, payments, orders, notifications and the gateway (its strangler in front of legacy),
// and `meshctl demo strangler` walks the catalogue's and then the orders' move against it. A
// legacy customer's order, placed with their legacy session at 100%, must come from the mesh's
// saga (the gateway exchanges the session), reach legacy's tables (the order sync), read the same
// through the shadowed GetOrder, and go back to legacy at 0%.
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
      } finally {
        await sql.end();
      }
      expect(await up.stop("SIGINT")).toBe(0);
    } finally {
      if (up.child.exitCode === null) await up.stop("SIGKILL");
    }
  }, 900_000);
});
