/**
 * `npm run bench` scenario: inventory's GetProduct read path through the product cache, against
 * the uncached read, in one run on the machine's Postgres and NATS (the service's own store and
 * the cache of libs/cache, in this process; no RPC, so the figures are the cache's own).
 *
 * - uncached: the store's GetProduct query (one SELECT by primary key).
 * - miss: a key in neither tier: L1 miss, L2 (NATS KV) miss, the query, L1 and L2 filled.
 * - L2 hit: L1 holds one entry, so each read misses L1 and finds the product in NATS KV.
 * - L1 hit: every product in L1.
 * Each closed loop runs CONCURRENCY readers for DURATION. The latency at half the max rate is
 * measured over RPC by `cache-rpc.ts` (one thread cannot pace this process's L1 hits, tens of
 * thousands a second, and measure them too).
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createCache, createNatsKvTier } from "@meshwork/cache";
import { ProductSchema } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { openDatabase } from "@meshwork/db";
import { createTestDatabase, uniqueName } from "@meshwork/testing";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
// The inventory service's own store and schema (the service has no library entry point).
import { createInventoryStore } from "../../../apps/inventory/dist/adapters/db/inventory-store.js";
import { schema } from "../../../apps/inventory/dist/adapters/db/schema.js";

const PRODUCTS = 1_000;
const CONCURRENCY = 16;
const DURATION_MS = Number(process.env.MESHWORK_BENCH_CACHE_MS ?? 2_000);
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const migrations = fileURLToPath(new URL("../../../apps/inventory/drizzle", import.meta.url));

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

async function closedLoop(
  read: (i: number) => Promise<unknown>,
): Promise<{ rate: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  const end = performance.now() + DURATION_MS;
  let n = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await read(n++);
        latencies.push(performance.now() - t);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { rate: latencies.length / (DURATION_MS / 1000), p50: pct(latencies, 50), p99: pct(latencies, 99) };
}

async function main(): Promise<void> {
  const db = await createTestDatabase("mw_benchcache");
  const database = await openDatabase(
    {
      url: db.url,
      dataDir: "unused",
      pool: { max: 20, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 },
    },
    schema,
  );
  const nc = await connect({ servers: natsUrl });
  const bucket = uniqueName("benchcache").replace(/[^A-Za-z0-9_-]/g, "_");
  try {
    await database.migrate(migrations);
    const store = createInventoryStore(database.db, { namespace: "" });
    const ids: string[] = [];
    for (let i = 0; i < PRODUCTS; i++) {
      const p = await store.createProduct({
        id: randomUUID(),
        sku: `B-${i}-${randomUUID().slice(0, 6)}`,
        name: `Product ${i}`,
        priceMinor: 1_000 + i,
        currency: "EUR",
        onHand: 100,
      });
      ids.push(p.id);
    }
    const toMessage = async (id: string) => {
      const p = await store.getProduct(id);
      return {
        $typeName: "meshwork.inventory.v1.Product" as const,
        id: p.id,
        sku: p.sku,
        name: p.name,
        price: {
          $typeName: "meshwork.common.v1.Money" as const,
          amountMinor: BigInt(p.priceMinor),
          currency: p.currency,
        },
        onHand: BigInt(p.onHand),
        reserved: BigInt(p.reserved),
        available: BigInt(p.onHand - p.reserved),
        version: BigInt(p.version),
      };
    };
    const make = (maxEntries: number) =>
      createCache({
        name: "products",
        schema: ProductSchema,
        version: (p) => Number(p.version),
        ttlMs: 600_000,
        local: { maxEntries },
        shared: createNatsKvTierSync(),
        sharedTimeoutMs: 1_000,
      });
    const tier = await createNatsKvTier({ nc, bucket, maxTtlMs: 600_000 });
    function createNatsKvTierSync() {
      return tier;
    }
    const id = (i: number) => ids[i % PRODUCTS] as string;

    const uncached = await closedLoop((i) => store.getProduct(id(i)));
    const missCache = make(PRODUCTS);
    let k = 0;
    const miss = await closedLoop((i) => missCache.get(`${id(i)}#${k++}`, () => toMessage(id(i))));
    const warm = make(PRODUCTS);
    for (const x of ids) await warm.get(x, () => toMessage(x));
    await new Promise((r) => setTimeout(r, 500)); // the fills behind the answers reach NATS KV
    const l2Only = make(1);
    const l2 = await closedLoop((i) => l2Only.get(id(i), () => toMessage(id(i))));
    const l1 = await closedLoop((i) => warm.get(id(i), () => toMessage(id(i))));

    const row = (name: string, r: { rate: number; p50: number; p99: number }) =>
      `${name.padEnd(10)} ${r.rate.toFixed(0).padStart(9)} /s ${(r.rate / uncached.rate).toFixed(2).padStart(8)}x  p50 ${r.p50.toFixed(3)} ms  p99 ${r.p99.toFixed(3)} ms`;
    console.log(
      `cache: GetProduct read path, ${CONCURRENCY} readers, ${DURATION_MS} ms each (Postgres + NATS KV)`,
    );
    console.log(row("uncached", uncached));
    console.log(row("miss", miss));
    console.log(row("L2 hit", l2));
    console.log(row("L1 hit", l1));
    console.log(
      `misses: ${missCache.stats().loads.count} loads; L2 hits: ${l2Only.stats().shared.hits}; L1 hits: ${warm.stats().local.hits}`,
    );
  } finally {
    await (await new Kvm(nc).open(bucket)).destroy().catch(() => {});
    await nc.close();
    await database.close();
    await db.drop();
  }
}

await main();
