import { create } from "@bufbuild/protobuf";
import { type Product, ProductSchema } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import {
  startNatsServer,
  startRedisServer,
  type TestNatsServer,
  type TestRedisServer,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { type Cache, createCache } from "./cache.js";
import { createNatsKvTier } from "./nats-kv-tier.js";
import { createRedisTier } from "./redis-tier.js";
import type { SharedTier } from "./shared-tier.js";

class TestReader extends MetricReader {
  protected override async onForceFlush() {}
  protected override async onShutdown() {}
}

const product = (id: string) =>
  create(ProductSchema, { id, name: id, price: { amountMinor: 5n, currency: "EUR" }, version: 1n });

interface Server {
  stop(): Promise<void>;
  start(): Promise<void>;
  remove(): Promise<void>;
  tier(): Promise<SharedTier>;
  /** Makes the server answer slowly for `ms` (while connected). */
  slow?(ms: number): Promise<void>;
}

async function natsServer(): Promise<Server> {
  const srv: TestNatsServer = await startNatsServer();
  const bucket = uniqueName("cache").replace(/[^A-Za-z0-9_-]/g, "_");
  const conns: NatsConnection[] = [];
  return {
    stop: () => srv.stop(),
    start: () => srv.start(),
    async remove() {
      for (const c of conns) await c.close();
      await srv.remove();
    },
    async tier() {
      const nc = await connect({ servers: srv.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
      conns.push(nc);
      return createNatsKvTier({ nc, bucket, maxTtlMs: 60_000 });
    },
  };
}

async function redisServer(): Promise<Server> {
  const srv: TestRedisServer = await startRedisServer();
  const tiers: SharedTier[] = [];
  return {
    stop: () => srv.stop(),
    start: () => srv.start(),
    async remove() {
      for (const t of tiers) await t.close();
      await srv.remove();
    },
    async tier() {
      const t = createRedisTier({ url: srv.url });
      tiers.push(t);
      return t;
    },
    async slow(ms) {
      const admin = new Redis(srv.url);
      await admin.call("CLIENT", "PAUSE", String(ms), "ALL");
      admin.disconnect();
    },
  };
}

describe.each([
  ["NATS KV", natsServer],
  ["Redis", redisServer],
])("the cache while %s is stopped mid-test (a private server)", (_name, makeServer) => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it("answers every request from the source, says so once, and uses the shared tier again when it returns", async () => {
    const server = await makeServer();
    cleanups.push(() => server.remove());
    const reader = new TestReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter("test");
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = {
      warn: (_o: object, msg: string) => void lines.push({ level: "warn", msg }),
      info: (_o: object, msg: string) => void lines.push({ level: "info", msg }),
    };
    const make = async (): Promise<Cache<Product>> => {
      const c = createCache({
        name: "products",
        schema: ProductSchema,
        version: (p) => Number(p.version),
        ttlMs: 60_000,
        shared: await server.tier(),
        sharedTimeoutMs: 300,
        sharedProbeMs: 200,
        meter,
        logger,
      });
      cleanups.push(() => c.close());
      return c;
    };
    const a = await make();
    let loads = 0;
    const load = (id: string) => async () => {
      loads++;
      return product(id);
    };
    await a.get("before", load("before"));
    await waitFor(() => a.stats().shared.misses === 1);

    await server.stop();
    const keys = [...Array(200)].map((_, i) => `during-${i}`);
    const answers = await Promise.all(keys.map((k) => a.get(k, load(k))));
    expect(answers.map((p) => p?.id)).toEqual(keys);
    await a.invalidate("before", 2); // an event applied while the tier is out does not throw
    for (let i = 0; i < 5; i++) await a.get(`later-${i}`, load(`later-${i}`));
    expect(a.stats().shared.up).toBe(false);
    expect(lines.filter((l) => l.level === "warn")).toHaveLength(1);
    expect(lines[0]?.msg).toMatch(/shared tier unavailable/);

    await server.start();
    // Requests keep flowing; one of them probes the tier and finds it back.
    let n = 0;
    await waitFor(
      async () => {
        await a.get(`after-${n}`, load(`after-${n}`));
        n++;
        return a.stats().shared.up;
      },
      { what: "the shared tier to be used again", timeoutMs: 60_000 },
    );
    expect(lines.filter((l) => l.msg.match(/is back/))).toHaveLength(1);
    // A fill after the outage reaches the tier: another process finds it there.
    const id = "recovered";
    await a.get(id, load(id));
    const b = await make();
    const loadsBefore = loads;
    await waitFor(async () => (await b.get(id, load(id)))?.id === id && b.stats().shared.hits === 1, {
      what: "the other process to hit L2",
    });
    expect(loads).toBe(loadsBefore);

    const { resourceMetrics } = await reader.collect();
    const outages = resourceMetrics.scopeMetrics
      .flatMap((s) => s.metrics)
      .find((m) => m.descriptor.name === "cache.shared.outages");
    expect(outages?.dataPoints.reduce((sum, p) => sum + Number(p.value), 0)).toBe(1);
  });

  // Redis only (defined, not skipped, for it): a stopped NATS server refuses at once.
  if (makeServer === redisServer)
    it("falls through to the source when the tier answers later than its deadline", async () => {
      const server = await makeServer();
      cleanups.push(() => server.remove());
      const c = createCache({
        name: "products",
        schema: ProductSchema,
        version: (p) => Number(p.version),
        ttlMs: 60_000,
        shared: await server.tier(),
        sharedTimeoutMs: 200,
      });
      cleanups.push(() => c.close());
      await c.get("warm", async () => product("warm"));
      await server.slow?.(5_000);
      const started = performance.now();
      expect((await c.get("slow", async () => product("slow")))?.id).toBe("slow");
      // Well under the 5 s pause: the deadline cut the call (generous margin for a loaded box).
      expect(performance.now() - started).toBeLessThan(3_000);
      expect(c.stats().shared.up).toBe(false);
      expect(c.stats().shared.errors).toBeGreaterThanOrEqual(1);
    });
});
