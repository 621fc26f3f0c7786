import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ProductUpdatedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { connectNats, streamName } from "@meshwork/events";
import { waitFor } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestInventory, type TestInventory } from "./test-mesh.js";

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );

describe.each([
  ["NATS KV", {}],
  ["Redis", { CACHE_SHARED: "redis", REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" }],
])("two inventory instances with the product cache on %s (real Postgres, NATS, Redis)", (_name, cacheEnv) => {
  let t: TestInventory;
  const clients: Array<ReturnType<typeof createClient<typeof InventoryService>>> = [];

  beforeAll(async () => {
    t = await openTestInventory("mw_invcache");
    for (let i = 0; i < 2; i++) {
      const { url } = await t.start(cacheEnv);
      clients.push(createClient(InventoryService, createGrpcTransport({ baseUrl: url })));
    }
  });
  afterAll(() => t?.close());

  const newProduct = async () => {
    const [a] = clients;
    if (!a) throw new Error("no client");
    const { product } = await a.createProduct({
      sku: `C-${randomUUID().slice(0, 12)}`,
      name: "Lamp",
      price: { amountMinor: 1_000n, currency: "EUR" },
      initialStock: 10n,
    });
    if (!product) throw new Error("no product");
    return product;
  };

  it("an update on one instance reaches the other's cache through the event; the version grows", async () => {
    const [a, b] = clients as [(typeof clients)[0], (typeof clients)[0]];
    const p = await newProduct();
    expect(p.version).toBe(1n);
    // Both instances cache it.
    expect((await a.getProduct({ id: p.id })).product?.price?.amountMinor).toBe(1_000n);
    expect((await b.getProduct({ id: p.id })).product?.price?.amountMinor).toBe(1_000n);
    const { product: updated } = await a.updateProduct({
      id: p.id,
      price: { amountMinor: 1_250n, currency: "EUR" },
    });
    expect(updated).toMatchObject({ name: "Lamp", version: 2n, price: { amountMinor: 1_250n } });
    // The writer's own cache dropped the entry with the commit.
    expect((await a.getProduct({ id: p.id })).product?.price?.amountMinor).toBe(1_250n);
    await waitFor(async () => (await b.getProduct({ id: p.id })).product?.price?.amountMinor === 1_250n, {
      what: "instance b to see the new price",
    });
    const page = await b.listProducts({ pageSize: 100 });
    expect(page.products.find((x) => x.id === p.id)).toMatchObject({
      version: 2n,
      price: { amountMinor: 1_250n },
    });
  });

  it("stock changes (adjustments, reservations) reach every instance's cache too", async () => {
    const [a, b] = clients as [(typeof clients)[0], (typeof clients)[0]];
    const p = await newProduct();
    await a.getProduct({ id: p.id });
    await b.getProduct({ id: p.id });
    await a.reserveStock({ reservationId: randomUUID(), items: [{ productId: p.id, quantity: 3n }] });
    await waitFor(async () => (await b.getProduct({ id: p.id })).product?.available === 7n, {
      what: "b to see the reservation",
    });
    await b.adjustStock({ productId: p.id, delta: 5n, reason: "delivery" });
    await waitFor(async () => (await a.getProduct({ id: p.id })).product?.onHand === 15n, {
      what: "a to see the delivery",
    });
    expect((await a.getProduct({ id: p.id })).product?.version).toBe(3n);
  });

  it("publishes ProductUpdated with the new version; bad updates get precise codes", async () => {
    const [a] = clients as [(typeof clients)[0]];
    const p = await newProduct();
    await a.updateProduct({ id: p.id, name: "Desk lamp" });
    const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "inventory-test");
    try {
      const jsm = await jetstreamManager(nc);
      const stream = streamName(t.namespace, "INVENTORY");
      const found = await waitFor(async () => {
        const info = await jsm.streams.info(stream);
        for (let seq = info.state.last_seq; seq >= info.state.first_seq && seq > 0; seq--) {
          const m = await jsm.streams.getMessage(stream, { seq });
          if (!m?.subject.endsWith("ProductUpdated")) continue;
          const ev = fromBinary(ProductUpdatedSchema, m.data);
          if (ev.productId === p.id) return ev;
        }
        return undefined;
      });
      expect(found).toMatchObject({ version: 2n, name: "Desk lamp", price: { amountMinor: 1_000n } });
    } finally {
      await nc.close();
    }
    const nothing = await failure(a.updateProduct({ id: p.id }));
    expect(nothing.code).toBe(Code.InvalidArgument);
    expect(nothing.rawMessage).toMatch(/name or price/);
    const unknown = await failure(a.updateProduct({ id: randomUUID(), name: "x" }));
    expect(unknown.code).toBe(Code.NotFound);
    const empty = await failure(a.updateProduct({ id: p.id, name: "" }));
    expect(empty.code).toBe(Code.InvalidArgument);
    expect(empty.rawMessage).toContain("name");
    const badPrice = await failure(
      a.updateProduct({ id: p.id, price: { amountMinor: 5n, currency: "eur" } }),
    );
    expect(badPrice.code).toBe(Code.InvalidArgument);
  });

  it("an unknown product is NOT_FOUND", async () => {
    const [a] = clients as [(typeof clients)[0]];
    const missing = await failure(a.getProduct({ id: randomUUID() }));
    expect(missing.code).toBe(Code.NotFound);
  });
});
