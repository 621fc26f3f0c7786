import { create } from "@bufbuild/protobuf";
import { type Product, ProductSchema } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { uniqueName, waitFor } from "@meshwork/testing";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cache, createCache } from "./cache.js";
import { decodeEntry } from "./entry.js";
import { createNatsKvTier } from "./nats-kv-tier.js";
import { createRedisTier } from "./redis-tier.js";
import type { SharedTier } from "./shared-tier.js";

const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const product = (id: string, version: number, priceMinor = 100 * version) =>
  create(ProductSchema, {
    id,
    sku: `sku-${id}`,
    name: `product ${id}`,
    price: { amountMinor: BigInt(priceMinor), currency: "EUR" },
    version: BigInt(version),
  });

/** A loader of one key that counts its calls and answers what `source` holds now. */
function source(initial: Product | undefined) {
  const s = {
    current: initial,
    calls: 0,
    load: async () => {
      s.calls++;
      return s.current;
    },
  };
  return s;
}

interface Kit {
  /** A new tier client (another "process" sharing the same store). */
  tier(): Promise<SharedTier>;
  /** The raw entry stored under a cache's key. */
  raw(key: string): Promise<Uint8Array | undefined>;
  cleanup(): Promise<void>;
}

async function natsKit(): Promise<Kit> {
  const bucket = uniqueName("cache").replace(/[^A-Za-z0-9_-]/g, "_");
  const conns: NatsConnection[] = [];
  const nc = async () => {
    const c = await connect({ servers: NATS_URL, name: "cache-test" });
    conns.push(c);
    return c;
  };
  const admin = await nc();
  return {
    tier: async () => createNatsKvTier({ nc: await nc(), bucket, maxTtlMs: 60_000 }),
    raw: async (key) => {
      const kv = await new Kvm(admin).open(bucket);
      const e = await kv.get(key);
      return e?.operation === "PUT" ? e.value : undefined;
    },
    async cleanup() {
      await (await new Kvm(admin).open(bucket)).destroy().catch(() => {});
      for (const c of conns) await c.close();
    },
  };
}

async function redisKit(): Promise<Kit> {
  const prefix = `${uniqueName("cache")}:`;
  const admin = new Redis(REDIS_URL);
  const tiers: SharedTier[] = [];
  return {
    tier: async () => {
      const t = createRedisTier({ url: REDIS_URL, prefix });
      tiers.push(t);
      return t;
    },
    raw: async (key) => {
      const v = await admin.getBuffer(prefix + key);
      return v ?? undefined;
    },
    async cleanup() {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
      for (const t of tiers) await t.close();
      admin.disconnect();
    },
  };
}

describe.each([
  ["NATS KV", natsKit],
  ["Redis", redisKit],
])("a two-tier cache over %s (real server)", (_name, makeKit) => {
  let kit: Kit;
  const caches: Cache<Product>[] = [];
  const newCache = async (extra: { negativeTtlMs?: number } = {}): Promise<Cache<Product>> => {
    const c = createCache({
      name: "products",
      schema: ProductSchema,
      version: (p) => Number(p.version),
      ttlMs: 60_000,
      negativeTtlMs: 60_000,
      shared: await kit.tier(),
      sharedTimeoutMs: 2_000, // a loaded CI box: the deadline is not what these tests measure
      ...extra,
    });
    caches.push(c);
    return c;
  };
  const storedVersion = async (key: string) => {
    const raw = await kit.raw(`products.${key}`);
    const e = raw ? decodeEntry(raw) : undefined;
    return e ? `${e.kind}@${e.version}` : "none";
  };

  beforeAll(async () => {
    kit = await makeKit();
  });
  afterAll(async () => {
    for (const c of caches) await c.close();
    await kit.cleanup();
  });

  it("reads through: a miss loads once, then L1 answers in this process and L2 in another", async () => {
    const id = crypto.randomUUID();
    const src = source(product(id, 1));
    const a = await newCache();
    const b = await newCache();
    expect((await a.get(id, src.load))?.name).toBe(`product ${id}`);
    expect((await a.get(id, src.load))?.version).toBe(1n);
    expect(src.calls).toBe(1);
    expect(a.stats().local).toMatchObject({ hits: 1, misses: 1 });
    // The value reached L2 as the contract's Protobuf binary (filled behind the first answer).
    await waitFor(async () => (await storedVersion(id)) === "value@1", { what: "the value in L2" });
    const fromB = await b.get(id, src.load);
    expect(fromB?.price?.amountMinor).toBe(100n);
    expect(src.calls).toBe(1);
    expect(b.stats().shared).toMatchObject({ hits: 1, misses: 0, errors: 0, up: true });
  });

  it("makes one load per process for 1,000 concurrent misses of one key", async () => {
    const id = crypto.randomUUID();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    const slowLoad = async () => {
      calls++;
      await gate;
      return product(id, 1);
    };
    const a = await newCache();
    const b = await newCache();
    const all = [...Array(1_000)].flatMap(() => [a.get(id, slowLoad), b.get(id, slowLoad)]);
    await waitFor(() => a.stats().local.misses >= 1_000 && b.stats().local.misses >= 1_000);
    release();
    const values = await Promise.all(all);
    expect(values.every((v) => v?.id === id)).toBe(true);
    expect(a.stats().loads.count + b.stats().loads.count).toBe(calls);
    // One load per process at most: a process whose L2 read came after the other's fill made none.
    expect(a.stats().loads.count).toBeLessThanOrEqual(1);
    expect(b.stats().loads.count).toBeLessThanOrEqual(1);
    expect(calls).toBeGreaterThanOrEqual(1);
  });

  it("remembers a missing key for the negative TTL, then asks the source again", async () => {
    const id = crypto.randomUUID();
    const src = source(undefined);
    const a = await newCache({ negativeTtlMs: 300 });
    expect(await a.get(id, src.load)).toBeUndefined();
    expect(await a.get(id, src.load)).toBeUndefined();
    expect(src.calls).toBe(1);
    src.current = product(id, 1);
    await waitFor(async () => (await a.get(id, src.load))?.version === 1n, {
      what: "the negative entry to expire",
    });
    expect(src.calls).toBe(2);
  });

  it("keeps the newer value when invalidations arrive reordered", async () => {
    const id = crypto.randomUUID();
    const src = source(product(id, 1));
    const a = await newCache();
    const b = await newCache();
    await a.get(id, src.load);
    await b.get(id, src.load);
    // The source moves to v3 through v2; the events arrive v3 first, then v2.
    src.current = product(id, 3);
    await Promise.all([a.invalidate(id, 3), b.invalidate(id, 3)]);
    expect(await storedVersion(id)).toBe("tombstone@3");
    expect((await a.get(id, src.load))?.version).toBe(3n);
    await waitFor(async () => (await storedVersion(id)) === "value@3");
    await Promise.all([a.invalidate(id, 2), b.invalidate(id, 2)]);
    // The late v2 event neither dropped v3 from L1 nor replaced it in L2.
    const callsBefore = src.calls;
    expect((await a.get(id, src.load))?.version).toBe(3n);
    expect((await b.get(id, src.load))?.version).toBe(3n);
    expect(src.calls).toBe(callsBefore); // b found v3 in L2; the late event cost no load
    expect(await storedVersion(id)).toBe("value@3");
  });

  it("never stores a slow load that started before an update", async () => {
    const id = crypto.randomUUID();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const a = await newCache();
    const stale = a.get(id, async () => {
      await gate;
      return product(id, 1); // read before the update committed
    });
    await waitFor(() => a.stats().local.misses === 1);
    await a.invalidate(id, 2); // the update's event overtakes the slow load
    release();
    expect((await stale)?.version).toBe(1n); // its caller asked before the update
    expect(a.stats().staleRefused).toBe(1);
    expect(await storedVersion(id)).toBe("tombstone@2");
    const fresh = source(product(id, 2));
    expect((await a.get(id, fresh.load))?.version).toBe(2n);
    expect(fresh.calls).toBe(1);
  });

  it("drops an entry that another process's stale write would otherwise bring back", async () => {
    const id = crypto.randomUUID();
    const a = await newCache();
    const b = await newCache();
    await a.invalidate(id, 5); // b has not seen the event yet
    expect((await b.get(id, source(product(id, 4)).load))?.version).toBe(4n);
    // b's fill of v4 was refused by L2's tombstone at v5.
    await waitFor(() => b.stats().shared.refused === 1, { what: "b's offer to be answered" });
    expect(await storedVersion(id)).toBe("tombstone@5");
    expect((await a.get(id, source(product(id, 5)).load))?.version).toBe(5n);
  });
});
