import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DatabaseHandle, observeDatabasePool, openDatabase } from "./database.js";

/** A reader that collects on demand, as a Prometheus scrape does. */
class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** `name{state}` -> value, for the gauges of one collection. */
async function scrape(reader: OnDemandReader): Promise<Record<string, number>> {
  const { resourceMetrics } = await reader.collect();
  const out: Record<string, number> = {};
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const m of scope.metrics) {
      for (const p of m.dataPoints) {
        const state = p.attributes["db.client.connection.state"];
        expect(p.attributes["db.client.connection.pool.name"]).toBeTypeOf("string");
        out[state ? `${m.descriptor.name}{${state}}` : m.descriptor.name] = p.value as number;
      }
    }
  }
  return out;
}

describe("observeDatabasePool (postgres.js)", () => {
  let testDb: TestDatabase;
  let handle: DatabaseHandle<Record<string, never>>;
  let reader: OnDemandReader;
  let provider: MeterProvider;

  beforeAll(async () => {
    testDb = await createTestDatabase("mw_pool");
    handle = await openDatabase(
      {
        url: testDb.url,
        dataDir: "unused",
        pool: { max: 2, idleTimeoutS: 30, maxLifetimeS: 60, connectTimeoutS: 5 },
      },
      {},
    );
    reader = new OnDemandReader();
    provider = new MeterProvider({ readers: [reader] });
    observeDatabasePool(handle, provider.getMeter("test"));
  });
  afterAll(async () => {
    await provider?.shutdown();
    await handle?.close();
    await testDb?.drop();
  });

  it("counts used and idle connections as the server sees them, and transactions waiting for one", async () => {
    expect(await scrape(reader)).toEqual({
      "db.client.connection.count{used}": 0,
      "db.client.connection.count{idle}": 0,
      "db.client.connection.pending_requests": 0,
      "db.client.connection.max": 2,
      "db.client.connection.timeouts": 0,
    });

    // Two transactions hold both connections; a third waits for one.
    // Which of the first two gets a connection first is up to the pool: gates are by name.
    const gates = new Map<string, () => void>();
    const entered: string[] = [];
    const hold = (name: string) =>
      handle.db.transaction(async (tx) => {
        entered.push(name);
        await tx.execute(sql`select 1`);
        await new Promise<void>((resolve) => gates.set(name, resolve));
      });
    const a = hold("a");
    const b = hold("b");
    const until = async (cond: () => boolean) => {
      for (const deadline = Date.now() + 10_000; !cond(); ) {
        if (Date.now() > deadline) throw new Error("timed out");
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await until(() => gates.size === 2);
    const c = hold("c");
    expect(await scrape(reader)).toEqual({
      "db.client.connection.count{used}": 2,
      "db.client.connection.count{idle}": 0,
      "db.client.connection.pending_requests": 1,
      "db.client.connection.max": 2,
      "db.client.connection.timeouts": 0,
    });
    expect([...entered].sort()).toEqual(["a", "b"]);

    // One commits: the waiting one gets its connection.
    gates.get("a")?.();
    gates.delete("a");
    await a;
    await until(() => gates.size === 2 && gates.has("c"));
    expect(await scrape(reader)).toMatchObject({
      "db.client.connection.count{used}": 2,
      "db.client.connection.pending_requests": 0,
    });

    for (const g of gates.values()) g();
    gates.clear();
    await Promise.all([b, c]);
    expect(await scrape(reader)).toEqual({
      "db.client.connection.count{used}": 0,
      "db.client.connection.count{idle}": 2,
      "db.client.connection.pending_requests": 0,
      "db.client.connection.max": 2,
      "db.client.connection.timeouts": 0,
    });
  });

  it("leaves out postgres.js's LISTEN connection, which is not one of the pool's", async () => {
    const unlisten = await handle.listen("pool_metrics_test", () => {});
    try {
      const counts = await scrape(reader);
      expect(counts["db.client.connection.count{used}"]).toBe(0);
      expect(counts["db.client.connection.count{idle}"]).toBe(2);
    } finally {
      await unlisten();
    }
  });

  // Read-through hmend: single statements queue behind held connections as transactions do
  // (bounded by DB_POOL_WAIT_TIMEOUT_MS since 9375a5e) and were not counted.
  it("counts single statements waiting for a connection, outside a transaction", async () => {
    const gates: Array<() => void> = [];
    const hold = () =>
      handle.db.transaction(async (tx) => {
        await tx.execute(sql`select 1`);
        await new Promise<void>((resolve) => gates.push(resolve));
      });
    const held = [hold(), hold()];
    for (const deadline = Date.now() + 10_000; gates.length < 2; ) {
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 10));
    }
    const query = handle.db.execute(sql`select 2`).then(() => {}); // Drizzle's runs once awaited
    const ping = handle.ping();
    // postgres.js hands a statement to the pool a few microtasks after it is awaited.
    const pending = () => scrape(reader).then((m) => m["db.client.connection.pending_requests"]);
    for (const deadline = Date.now() + 2_000; (await pending()) !== 2 && Date.now() < deadline; )
      await new Promise((r) => setTimeout(r, 10));
    expect(await pending()).toBe(2);
    for (const g of gates) g();
    await Promise.all([...held, query, ping]);
    expect((await scrape(reader))["db.client.connection.pending_requests"]).toBe(0);
  });

  it("leaves nothing counted as waiting after a transaction that failed", async () => {
    await expect(
      handle.db.transaction(async (tx) => {
        await tx.execute(sql`select 1/0`);
      }),
    ).rejects.toThrow();
    expect((await scrape(reader))["db.client.connection.pending_requests"]).toBe(0);
  });
});
