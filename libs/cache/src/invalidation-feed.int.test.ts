import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ProductUpdatedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import { type Product, ProductSchema } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { uniqueName, waitFor } from "@meshwork/testing";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cache, createCache } from "./cache.js";
import { type InvalidationFeed, startInvalidationFeed } from "./invalidation-feed.js";

const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

describe("invalidation fanned out over NATS to every instance (real NATS)", () => {
  const stream = uniqueName("INV")
    .replace(/[^A-Za-z0-9_]/g, "_")
    .toUpperCase();
  const subject = `${stream.toLowerCase()}.meshwork.inventory.>`;
  const conns: NatsConnection[] = [];
  const feeds: InvalidationFeed[] = [];
  let admin: NatsConnection;
  beforeAll(async () => {
    admin = await connect({ servers: NATS_URL });
    conns.push(admin);
    await (await jetstreamManager(admin)).streams.add({ name: stream, subjects: [subject] });
  });
  afterAll(async () => {
    for (const f of feeds) await f.stop();
    await (await jetstreamManager(admin)).streams.delete(stream);
    for (const c of conns) await c.close();
  });

  const instance = async (): Promise<{ cache: Cache<Product>; feed: InvalidationFeed }> => {
    const nc = await connect({ servers: NATS_URL });
    conns.push(nc);
    const cache = createCache({
      name: "products",
      schema: ProductSchema,
      version: (p) => Number(p.version),
      ttlMs: 60_000,
    });
    const feed = startInvalidationFeed({
      nc,
      stream,
      filterSubject: subject,
      onEvent: async (e) => {
        if (e.type !== ProductUpdatedSchema.typeName) return;
        const ev = fromBinary(ProductUpdatedSchema, e.data);
        await cache.invalidate(ev.productId, Number(ev.version));
      },
    });
    feeds.push(feed);
    await feed.attached;
    return { cache, feed };
  };

  it("drops the key in every instance's L1 when the owner publishes the change", async () => {
    const id = crypto.randomUUID();
    let price = 100n;
    let version = 1n;
    const load = async () =>
      create(ProductSchema, { id, price: { amountMinor: price, currency: "EUR" }, version });
    const a = await instance();
    const b = await instance();
    expect((await a.cache.get(id, load))?.price?.amountMinor).toBe(100n);
    expect((await b.cache.get(id, load))?.price?.amountMinor).toBe(100n);
    price = 250n;
    version = 2n;
    const h = headers();
    h.set("ce-type", ProductUpdatedSchema.typeName);
    await jetstream(admin).publish(
      `${stream.toLowerCase()}.meshwork.inventory.v1.ProductUpdated`,
      toBinary(ProductUpdatedSchema, create(ProductUpdatedSchema, { productId: id, version: 2n })),
      { headers: h },
    );
    for (const { cache } of [a, b]) {
      await waitFor(async () => (await cache.get(id, load))?.price?.amountMinor === 250n, {
        what: "the new price in each instance",
      });
    }
    expect(a.feed.applied).toBe(1);
    expect(b.feed.applied).toBe(1);
  });
});
