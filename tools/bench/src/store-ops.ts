/**
 * The order path's database work per operation, without RPC around it: inventory's reserve +
 * commit and payments' authorize + capture, run back to back on a pool of one connection, and
 * the CPU each costs this process (`process.cpuUsage`) and the Postgres backend that served it
 * (`/proc/<pid>/stat` of `pg_backend_pid()`, the server on this machine). CPU time, unlike
 * throughput, holds still on a loaded machine, so two builds can be compared in alternated runs:
 * MESHWORK_BENCH_ROOT=<a checkout with built dist/> loads that checkout's stores (default: this
 * one). `node dist/store-ops.js`.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createTestDatabase } from "@meshwork/testing";

const ROOT = process.env.MESHWORK_BENCH_ROOT ?? fileURLToPath(new URL("../../..", import.meta.url));
const OPS = Number(process.env.MESHWORK_BENCH_STORE_OPS ?? 1_500);

/** utime + stime of a process, in clock ticks (10 ms). */
function ticks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

// biome-ignore lint/suspicious/noExplicitAny: the stores of whichever checkout ROOT names
type Any = any;
const load = (path: string): Promise<Any> => import(pathToFileURL(`${ROOT}/${path}`).href);

/** The Postgres backends of these database handles (pools of one connection). */
async function backends(...databases: Any[]): Promise<number[]> {
  return Promise.all(
    databases.map(async (d) => Number((await d.db.execute("select pg_backend_pid() as pid"))[0].pid)),
  );
}

async function measure(
  name: string,
  databases: Any[],
  setup: () => Promise<void>,
  op: () => Promise<void>,
): Promise<void> {
  const pids = await backends(...databases);
  const pgTicks = () => pids.reduce((sum, pid) => sum + ticks(pid), 0);
  await setup();
  for (let i = 0; i < 200; i++) await op(); // warm-up: statements prepared, code optimised
  const cpu0 = process.cpuUsage();
  const pg0 = pgTicks();
  for (let i = 0; i < OPS; i++) await op();
  const cpu = process.cpuUsage(cpu0);
  const pg = pgTicks() - pg0;
  const nodeUs = (cpu.user + cpu.system) / OPS;
  const pgUs = (pg * 10_000) / OPS;
  console.log(
    `${name}: node ${nodeUs.toFixed(0)} us, postgres backend ${pgUs.toFixed(0)} us per operation (${OPS} ops)`,
  );
}

async function inventory(): Promise<void> {
  const { openDatabase } = await load("node_modules/@meshwork/db/dist/index.js");
  const { schema } = await load("apps/inventory/dist/adapters/db/schema.js");
  const { createInventoryStore } = await load("apps/inventory/dist/adapters/db/inventory-store.js");
  const { loadConfig } = await load("apps/inventory/dist/config.js");
  const testDb = await createTestDatabase("mw_storeops_inv");
  const config = loadConfig({ DATABASE_URL: testDb.url, DB_POOL_MAX: "1" }).db;
  const database = await openDatabase(config, schema);
  try {
    await database.migrate(`${ROOT}/apps/inventory/drizzle`);
    const store = createInventoryStore(database.db, { namespace: "bench." });
    const id = randomUUID();
    await measure(
      "inventory reserve + commit",
      [database],
      () =>
        store.createProduct({
          id,
          sku: `SKU-${id}`,
          name: "p",
          priceMinor: 100,
          currency: "EUR",
          onHand: 1_000_000_000,
        }),
      async () => {
        const r = randomUUID();
        await store.reserve(r, [{ productId: id, quantity: 1 }]);
        await store.commit(r);
      },
    );
  } finally {
    await database.close();
    await testDb.drop();
  }
}

async function payments(): Promise<void> {
  const { openDatabase } = await load("node_modules/@meshwork/db/dist/index.js");
  const { schema } = await load("apps/payments/dist/adapters/db/schema.js");
  const { createPaymentStore } = await load("apps/payments/dist/adapters/db/payment-store.js");
  const { SimulatedProvider } = await load("apps/payments/dist/adapters/provider/simulated-provider.js");
  const { loadConfig } = await load("apps/payments/dist/config.js");
  const testDb = await createTestDatabase("mw_storeops_pay");
  const { createProviderLedger } = await load("apps/payments/dist/adapters/db/provider-ledger.js");
  const config = loadConfig({ DATABASE_URL: testDb.url, DB_POOL_MAX: "1" }).db;
  const database = await openDatabase(config, schema);
  // The provider's ledger on a pool of its own, as the service has it (server.ts).
  const writer = await openDatabase(config, schema);
  try {
    await database.migrate(`${ROOT}/apps/payments/drizzle`);
    const ledger = createProviderLedger(database, writer);
    await ledger.load();
    const faults = { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 1_000_000 };
    const provider = new SimulatedProvider(faults, Math.random, ledger);
    const store = createPaymentStore(database.db, provider, "bench.");
    await measure(
      "payments authorize + capture (provider ledger in Postgres)",
      [database, writer],
      async () => {},
      async () => {
        const paymentId = randomUUID();
        await store.authorize({ paymentId, userId: randomUUID(), amountMinor: 1_000, currency: "EUR" });
        await store.capture(paymentId);
      },
    );
  } finally {
    await writer.close();
    await database.close();
    await testDb.drop();
  }
}

console.log(`== store operations of ${ROOT}, load ${readFileSync("/proc/loadavg", "utf8").trim()}`);
await inventory();
await payments();
