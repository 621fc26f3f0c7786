import { createServer } from "node:http";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { createCache } from "@meshwork/cache";
import {
  GetProductResponseSchema,
  type InventoryService,
  ProductSchema,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { createTelemetry } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createCatalogue } from "./catalogue.js";

/** An inventory client that knows some products and counts GetProduct calls. */
function fakeInventory() {
  const known = new Map<string, bigint>();
  const versions = new Map<string, bigint>();
  const calls: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  const client = {
    async getProduct({ id }: { id: string }) {
      calls.push(id);
      await gate;
      const price = known.get(id);
      if (price === undefined) throw new ConnectError(`product ${id} not found`, Code.NotFound);
      return create(GetProductResponseSchema, {
        product: { id, price: { amountMinor: price, currency: "EUR" }, version: versions.get(id) ?? 1n },
      });
    },
  } as unknown as Client<typeof InventoryService>;
  return {
    client,
    known,
    versions,
    calls,
    hold() {
      let open: () => void = () => {};
      gate = new Promise<void>((r) => {
        open = r;
      });
      return () => {
        gate = Promise.resolve();
        open();
      };
    },
  };
}

const servers: Array<ReturnType<typeof createServer>> = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function scraper(telemetry: ReturnType<typeof createTelemetry>) {
  const server = createServer((req, res) => telemetry.metricsHandler(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return async (result: string) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const line = text
      .split("\n")
      .find(
        (l) => l.startsWith("cache_requests") && l.includes('tier="l1"') && l.includes(`result="${result}"`),
      );
    return line ? Number(line.split(" ").at(-1)) : 0;
  };
}

const productCache = (
  telemetry: ReturnType<typeof createTelemetry>,
  extra: { max?: number; negativeTtlMs?: number } = {},
) =>
  createCache({
    name: "products",
    schema: ProductSchema,
    version: (p) => Number(p.version),
    ttlMs: 60_000,
    negativeTtlMs: extra.negativeTtlMs ?? 60_000,
    local: { maxEntries: extra.max ?? 100 },
    meter: telemetry.meter,
  });

describe("product catalogue through the product cache (L1 only: the tiers are tested in libs/cache)", () => {
  it("asks inventory once per product, even for placements that miss together; counts hits and misses", async () => {
    const inventory = fakeInventory();
    inventory.known.set("p1", 1_250n);
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const count = await scraper(telemetry);
    const catalogue = createCatalogue(() => inventory.client, productCache(telemetry));
    const open = inventory.hold();
    const together = Array.from({ length: 5 }, () => catalogue.price("p1"));
    open();
    for (const p of await Promise.all(together)) expect(p).toEqual({ amountMinor: 1_250n, currency: "EUR" });
    expect(await catalogue.price("p1")).toEqual({ amountMinor: 1_250n, currency: "EUR" });
    expect(inventory.calls).toEqual(["p1"]);
    expect(await count("miss")).toBe(5);
    expect(await count("hit")).toBe(1);
    await telemetry.shutdown();
  });

  it("remembers an unknown product for the negative TTL only, and never a failure", async () => {
    const inventory = fakeInventory();
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const catalogue = createCatalogue(
      () => inventory.client,
      productCache(telemetry, { negativeTtlMs: 200 }),
    );
    await expect(catalogue.price("p2")).rejects.toMatchObject({ code: Code.NotFound });
    inventory.known.set("p2", 99n);
    await expect(catalogue.price("p2")).rejects.toMatchObject({ code: Code.NotFound });
    expect(inventory.calls).toEqual(["p2"]);
    await waitFor(async () => (await catalogue.price("p2").catch(() => undefined))?.amountMinor === 99n);

    const flaky = fakeInventory();
    flaky.known.set("p3", 5n);
    let down = true;
    const client = {
      getProduct: (req: { id: string }) =>
        down
          ? Promise.reject(new ConnectError("inventory restarting", Code.Unavailable))
          : flaky.client.getProduct(req),
    } as unknown as Client<typeof InventoryService>;
    const c2 = createCatalogue(() => client, productCache(telemetry));
    await expect(c2.price("p3")).rejects.toMatchObject({ code: Code.Unavailable });
    down = false;
    await expect(c2.price("p3")).resolves.toEqual({ amountMinor: 5n, currency: "EUR" });
    await telemetry.shutdown();
  });

  it("drops a product when its price changes, and keeps the newer price against a late event", async () => {
    const inventory = fakeInventory();
    inventory.known.set("p4", 100n);
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const cache = productCache(telemetry);
    const catalogue = createCatalogue(() => inventory.client, cache);
    expect((await catalogue.price("p4")).amountMinor).toBe(100n);
    inventory.known.set("p4", 300n);
    inventory.versions.set("p4", 3n);
    await cache.invalidate("p4", 3);
    expect((await catalogue.price("p4")).amountMinor).toBe(300n);
    await cache.invalidate("p4", 2); // a late event of an older change
    expect((await catalogue.price("p4")).amountMinor).toBe(300n);
    expect(inventory.calls).toEqual(["p4", "p4"]);
    await telemetry.shutdown();
  });

  it("asks inventory every time without a cache (PRODUCT_CACHE_TTL_MS=0)", async () => {
    const inventory = fakeInventory();
    inventory.known.set("p5", 10n);
    const none = createCatalogue(() => inventory.client, undefined);
    await none.price("p5");
    await none.price("p5");
    expect(inventory.calls).toHaveLength(2);
  });

  it("keeps at most `max` products, dropping the least recently used", async () => {
    const inventory = fakeInventory();
    for (const id of ["a", "b", "c"]) inventory.known.set(id, 1n);
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const catalogue = createCatalogue(() => inventory.client, productCache(telemetry, { max: 2 }));
    await catalogue.price("a");
    await catalogue.price("b");
    await catalogue.price("a"); // a is now the most recently used
    await catalogue.price("c"); // evicts b
    await catalogue.price("a");
    expect(inventory.calls).toEqual(["a", "b", "c"]);
    await catalogue.price("b");
    expect(inventory.calls).toEqual(["a", "b", "c", "b"]);
    await telemetry.shutdown();
  });
});
