/**
 * The orders bench's peer (issue 24.2): the same placement saga on DBOS Transact
 * (`dbos-orders.ts`, a process of its own) against the same inventory and payments services and
 * the same Postgres, driven by the same number of customers for the same time. Its application
 * database and its DBOS system database are created for the run under unique names and dropped.
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import type { Mesh } from "@meshwork/e2e";
import { createTestDatabase, type ManagedProcess, startProcess } from "@meshwork/testing";
import postgres from "postgres";
import { cpuTicksSpent, readCpu } from "./servers.js";

const APP = fileURLToPath(new URL("./dbos-orders.js", import.meta.url));

export interface PeerResult {
  placed: number;
  confirmed: number;
  cancelled: number;
  ordersPerSecond: number;
  /** ms of CPU per finished order, by process (`dbos-orders` is the peer's orders process). */
  cpuMsPerOrder: Record<string, number>;
}

/** Polls the peer's orders until `ids` are all confirmed or cancelled (or the deadline passes). */
async function finished(db: postgres.Sql, ids: string[], timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await db<{ n: string }[]>`
      select count(*) as n from orders where id = any(${ids}::uuid[]) and status in ('confirmed', 'cancelled')`;
    if (Number(row?.n) >= ids.length || Date.now() > deadline) return Number(row?.n);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Runs the peer at full rate: `concurrency` customers place orders back to back for
 * `durationS`, after a warm-up; the rate is the orders confirmed per second from the first
 * placement until the last one finished, as the Meshwork scenario counts it.
 */
export async function runDbosPeer(
  mesh: Mesh,
  options: { customers: string[]; products: string[]; concurrency: number; durationS: number },
): Promise<PeerResult> {
  const [appDb, systemDb] = await Promise.all([
    createTestDatabase("mw_dbos_app"),
    createTestDatabase("mw_dbos_sys"),
  ]);
  // The bench's own connection is opened before the peer takes its 20: the machine's Postgres
  // is shared, and its connection limit may be reached meanwhile.
  const db = postgres(appDb.url, { max: 1, onnotice: () => {} });
  let proc: ManagedProcess | undefined;
  try {
    await db`select 1`;
    proc = startProcess(process.execPath, [APP], {
      env: {
        APP_DATABASE_URL: appDb.url,
        DBOS_SYSTEM_DATABASE_URL: systemDb.url,
        INVENTORY_URL: mesh.urls.inventory,
        PAYMENTS_URL: mesh.urls.payments,
        ORDERS_IDENTITY_KEY: mesh.keys.orders.privateKey,
        // 20 connections in all, as the orders service has (DB_POOL_MAX=20).
        APP_POOL_MAX: "10",
        SYSTEM_POOL_MAX: "10",
      },
    });
    const port = (await proc.waitForLog((l) => l.msg === "listening", 60_000)).port as number;
    const client = createClient(OrderService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const { customers, products } = options;
    let n = 0;
    const placeOne = async () => {
      const i = n++;
      const { order } = await client.placeOrder(
        {
          idempotencyKey: randomUUID(),
          items: [{ productId: products[i % products.length] ?? "", quantity: 1n }],
        },
        { headers: { "x-user-id": customers[i % customers.length] ?? "" } },
      );
      return order?.id ?? "";
    };
    const warm: string[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let k = 0; k < 16; k++) warm.push(await placeOne());
      }),
    );
    if ((await finished(db, warm, 60_000)) < warm.length)
      throw new Error("the peer's warm-up orders did not finish");

    const pid = proc.child.pid;
    const groupOf = (p: number, comm: string) => {
      if (p === pid) return "dbos-orders";
      if (p === process.pid) return "client";
      for (const [name, s] of Object.entries(mesh.procs)) if (s.child.pid === p) return name;
      return comm === "postgres" ? "postgres" : undefined;
    };
    const cpuBefore = await readCpu(groupOf);
    const placed: string[] = [];
    const t0 = Date.now();
    const stopAt = t0 + options.durationS * 1_000;
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (Date.now() < stopAt) placed.push(await placeOne());
      }),
    );
    const done = await finished(db, placed, 120_000);
    const cpuSpent = cpuTicksSpent(cpuBefore, await readCpu(groupOf));
    const [row] = await db<{ t: Date; confirmed: string; cancelled: string }[]>`
      select max(updated_at) as t,
             count(*) filter (where status = 'confirmed') as confirmed,
             count(*) filter (where status = 'cancelled') as cancelled
      from orders where id = any(${placed}::uuid[])`;
    const elapsed = ((row?.t?.getTime() ?? Date.now()) - t0) / 1_000;
    const cpuMsPerOrder = Object.fromEntries(
      [...cpuSpent].map(([g, t]) => [g, Number(((t * 10) / Math.max(1, done)).toFixed(2))]),
    );
    return {
      placed: placed.length,
      confirmed: Number(row?.confirmed ?? 0),
      cancelled: Number(row?.cancelled ?? 0),
      ordersPerSecond: Number(row?.confirmed ?? 0) / elapsed,
      cpuMsPerOrder,
    };
  } finally {
    await db.end();
    await proc?.stop("SIGTERM", 10_000);
    await Promise.all([appDb.drop(), systemDb.drop()]);
  }
}
