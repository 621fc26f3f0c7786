import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { OrderService, OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { checkConsistency } from "@meshwork/orders";
import { adminUrl, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import { afterAll, describe, expect, it, onTestFailed } from "vitest";
import { dropMeshDatabases, removeMeshStreams } from "../test/mesh-cleanup.js";
import { demoAdmin } from "./admin.js";
import { adminNatsCredentials } from "./nats-auth.js";
import { registryBucketFor, registryRows } from "./registry.js";
import type { SupervisionReport } from "./up.js";

/**
 * The scale-out rehearsal of infra/k8s on one machine: `meshctl up --replicas orders=3,
 * inventory=2`, orders placed through the gateway by concurrent clients, and one orders and one
 * inventory instance killed (SIGKILL) in the middle. The registry holds every instance, calls are
 * spread over them, only calls in flight at the kill may fail, every saga ends, and the
 * consistency checker finds nothing.
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));
const meshctl = join(root, "tools/meshctl/dist/main.js");
const WORKERS = 6;

interface Call {
  startedAt: number;
  endedAt: number;
  orderId?: string;
  error?: string;
}

// In every run: ten processes and about 40 s of load on a quiet machine. Its one failure (callers
// of payments cancelled at their deadline) was the payments pool deadlock fixed in d86ff83.
describe("meshctl up --replicas: instances killed under load", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-scale-"));
  const prefix = uniqueName("mwscale");
  const namespace = `${prefix}.`;
  afterAll(async () => {
    await dropMeshDatabases(prefix);
    await removeMeshStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });

  it("keeps the registry, the balancing and the sagas going: no failure beyond the killed instances' in-flight calls, every saga terminal, checker clean", async () => {
    const proc = startProcess(
      process.execPath,
      [
        meshctl,
        "up",
        "--ports",
        "auto",
        "--database-url",
        adminUrl(),
        "--db-prefix",
        prefix,
        "--replicas",
        "orders=3,inventory=2",
        "--log-level",
        "warn",
      ],
      { env: { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace } },
    );
    // Whatever ends the test (an assertion, a deadline, vitest's timeout), up's words are in the report.
    onTestFailed(() => {
      process.stderr.write(`meshctl up said (last 120 lines):\n${proc.lines.slice(-120).join("\n")}\n`);
    });
    try {
      await proc.waitForLine((l) => l === "meshctl | the mesh is up; Ctrl-C stops it", 300_000);
      const addressOf = (name: string) =>
        proc.lines
          .find((l) =>
            new RegExp(`^${name.replace("#", "\\#")}\\s+127\\.0\\.0\\.1:\\d+\\s+(SERVING|LIVE)`).test(l),
          )
          ?.split(/\s+/)[1] as string;
      const instances = ["orders", "orders#2", "orders#3", "inventory", "inventory#2"];
      for (const name of instances) expect(addressOf(name), name).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(new Set(instances.map(addressOf)).size).toBe(instances.length);
      const gateway = `http://${addressOf("gateway")}`;

      // The registry: every instance announced itself.
      const nats = proc.lines
        .find((l) => l.startsWith("meshctl | NATS at "))
        ?.match(/NATS at (\S+): /)?.[1] as string;
      const registered = async () => {
        const r = await registryRows(
          nats,
          registryBucketFor(namespace),
          adminNatsCredentials(join(home, "nats-auth")),
        );
        if (!r.ok) throw new Error(r.detail);
        return r.rows.filter((row) => row[5] === "SERVING");
      };
      const count = (rows: string[][], service: string) => rows.filter((r) => r[0] === service).length;
      await waitFor(
        async () => {
          const rows = await registered();
          return count(rows, "orders") === 3 && count(rows, "inventory") === 2;
        },
        { what: "3 orders and 2 inventory instances in the registry", timeoutMs: 60_000 },
      );

      const edge = createGrpcTransport({ baseUrl: gateway });
      const users = createClient(UserService, edge);
      const inventory = createClient(InventoryService, edge);
      const orders = createClient(OrderService, edge);
      const payments = createClient(PaymentService, edge);
      const account = await demoAdmin(gateway, home);
      expect(account).toBeDefined();
      const login = async (email: string, password: string) => {
        await users
          .registerUser({ email, password, displayName: email.split("@")[0] as string })
          .catch((err: unknown) => {
            if (!/already/i.test(ConnectError.from(err).message)) throw err;
          });
        const res = await users.login({ email, password });
        return { headers: { authorization: `Bearer ${res.accessToken}` } };
      };
      const admin = await login(account?.email as string, account?.password as string);
      const customer = await login(`scale-${randomUUID().slice(0, 8)}@example.com`, "scale out please");
      const products = await Promise.all(
        [0, 1, 2].map(async (i) => {
          const { product } = await inventory.createProduct(
            {
              sku: `SCALE-${i}-${randomUUID().slice(0, 6)}`,
              name: `Scale ${i}`,
              price: { amountMinor: 500n, currency: "EUR" },
              initialStock: 100_000n,
            },
            admin,
          );
          return product?.id as string;
        }),
      );

      // Load: WORKERS clients, each with one call in flight at a time.
      const calls: Call[] = [];
      let stop = false;
      const worker = async (w: number) => {
        for (let i = 0; !stop; i++) {
          const call: Call = { startedAt: Date.now(), endedAt: 0 };
          try {
            const { order } = await orders.placeOrder(
              {
                idempotencyKey: randomUUID(),
                items: [{ productId: products[(w + i) % products.length] as string, quantity: 1n }],
              },
              // A deadline against a hang, not a latency goal: CI (load ~40) saw a call started
              // after the kill end DEADLINE_EXCEEDED at 15 s with nothing else failing.
              { ...customer, timeoutMs: 30_000 },
            );
            call.orderId = order?.id;
          } catch (err) {
            call.error = `${ConnectError.from(err).code}: ${ConnectError.from(err).rawMessage}`;
          }
          call.endedAt = Date.now();
          calls.push(call);
        }
      };
      const load = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));

      // Balancing: each orders instance serves PlaceOrder calls (its own /metrics says so).
      const served = async (address: string) => {
        const text = await fetch(`http://${address}/metrics`).then((r) => r.text());
        return [
          ...text.matchAll(/rpc_server_requests_total\{[^}]*rpc_method="PlaceOrder"[^}]*\} (\d+)/g),
        ].reduce((n, m) => n + Number(m[1]), 0);
      };
      await waitFor(
        async () =>
          (await Promise.all(["orders", "orders#2", "orders#3"].map((n) => served(addressOf(n))))).every(
            (n) => n > 0,
          ),
        {
          what: "PlaceOrder calls on every orders instance",
          timeoutMs: 60_000,
        },
      );
      await waitFor(async () => calls.filter((c) => c.orderId).length >= 30, {
        what: "30 orders placed",
        timeoutMs: 60_000,
      });

      // Kill one orders and one inventory instance outright.
      const report = JSON.parse(readFileSync(join(home, "supervisor.json"), "utf8")) as SupervisionReport;
      const pid = (name: string) => report.children.find((c) => c.name === name)?.pid as number;
      const killedAt = Date.now();
      process.kill(pid("orders#2"), "SIGKILL");
      process.kill(pid("inventory#2"), "SIGKILL");
      await proc.waitForLine((l) => /^meshctl \| orders#2 exited with SIGKILL/.test(l));
      // Load goes on past the kill, the restart and the registry's settling.
      const placedBefore = calls.filter((c) => c.orderId).length;
      await waitFor(async () => calls.filter((c) => c.orderId).length >= placedBefore + 60, {
        what: "60 more orders placed after the kill",
        timeoutMs: 90_000,
      });
      await proc.waitForLine((l) => l === "meshctl | orders#2 is back (restart 1)", 60_000);
      stop = true;
      await load;

      // Only calls in flight at the kill may have failed: at most one per client.
      const failed = calls.filter((c) => c.error);
      for (const f of failed) {
        expect(f.startedAt, `${f.error} started after the kill`).toBeLessThanOrEqual(killedAt);
      }
      expect(failed.length).toBeLessThanOrEqual(WORKERS);
      expect(calls.filter((c) => c.orderId).length).toBeGreaterThan(90);

      // Every saga ends, including those whose orders instance died under them (another takes
      // the lease over).
      const placed = calls.flatMap((c) => (c.orderId ? [c.orderId] : []));
      const terminal = new Set([OrderStatus.CONFIRMED, OrderStatus.CANCELLED]);
      await waitFor(
        async () => {
          const statuses = await Promise.all(placed.map((id) => orders.getOrder({ id }, customer)));
          return statuses.every((s) => terminal.has(s.order?.status ?? OrderStatus.UNSPECIFIED));
        },
        { what: "every saga terminal", timeoutMs: 120_000, intervalMs: 1_000 },
      );
      expect(await checkConsistency({ orders, inventory, payments, admin })).toEqual([]);

      // The registry is whole again: the restarted instances re-announced themselves.
      await waitFor(
        async () => {
          const rows = await registered();
          return count(rows, "orders") === 3 && count(rows, "inventory") === 2;
        },
        { what: "the registry back to 3 + 2 live instances", timeoutMs: 60_000 },
      );

      expect(await proc.stop("SIGINT")).toBe(0);
    } finally {
      // SIGINT: up stops the processes it started (SIGKILL would orphan them); bounded.
      if (proc.child.exitCode === null) {
        proc.child.kill("SIGINT");
        const ended = await Promise.race([
          proc.exited,
          new Promise((r) => setTimeout(() => r("hung"), 45_000).unref()),
        ]);
        if (ended === "hung") proc.child.kill("SIGKILL");
      }
    }
  }, 900_000);
});
