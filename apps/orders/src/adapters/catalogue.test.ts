import { createServer } from "node:http";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import {
  GetProductResponseSchema,
  type InventoryService,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { createTelemetry } from "@meshwork/telemetry";
import { afterEach, describe, expect, it } from "vitest";
import { createCatalogue } from "./catalogue.js";

/** An inventory client that knows some products and counts GetProduct calls. */
function fakeInventory() {
  const known = new Map<string, bigint>();
  const calls: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  const client = {
    async getProduct({ id }: { id: string }) {
      calls.push(id);
      await gate;
      const price = known.get(id);
      if (price === undefined) throw new ConnectError(`product ${id} not found`, Code.NotFound);
      return create(GetProductResponseSchema, {
        product: { id, price: { amountMinor: price, currency: "EUR" } },
      });
    },
  } as unknown as Client<typeof InventoryService>;
  return {
    client,
    known,
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
      .find((l) => l.startsWith("cache_requests") && l.includes(`result="${result}"`));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };
}

describe("product catalogue cache", () => {
  it("asks inventory once per product, even for placements that miss together; counts hits and misses", async () => {
    const inventory = fakeInventory();
    inventory.known.set("p1", 1_250n);
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const count = await scraper(telemetry);
    const catalogue = createCatalogue(() => inventory.client, {
      ttlMs: 60_000,
      max: 100,
      meter: telemetry.meter,
    });
    const open = inventory.hold();
    const together = Array.from({ length: 5 }, () => catalogue.price("p1"));
    open();
    for (const p of await Promise.all(together)) expect(p).toEqual({ amountMinor: 1_250n, currency: "EUR" });
    expect(await catalogue.price("p1")).toEqual({ amountMinor: 1_250n, currency: "EUR" });
    expect(inventory.calls).toEqual(["p1"]);
    expect(await count("miss")).toBe(1);
    expect(await count("hit")).toBe(5);
    await telemetry.shutdown();
  });

  it("never remembers a failure: a product unknown at first is found once it exists", async () => {
    const inventory = fakeInventory();
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const catalogue = createCatalogue(() => inventory.client, {
      ttlMs: 60_000,
      max: 100,
      meter: telemetry.meter,
    });
    await expect(catalogue.price("p2")).rejects.toMatchObject({ code: Code.NotFound });
    inventory.known.set("p2", 99n);
    expect(await catalogue.price("p2")).toEqual({ amountMinor: 99n, currency: "EUR" });
    expect(inventory.calls).toEqual(["p2", "p2"]);
    await telemetry.shutdown();
  });

  it("asks again once an entry is older than the TTL, and every time with a TTL of 0", async () => {
    const inventory = fakeInventory();
    inventory.known.set("p3", 10n);
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    let now = 1_000;
    const short = createCatalogue(() => inventory.client, {
      ttlMs: 30_000,
      max: 100,
      meter: telemetry.meter,
      clock: { now: () => now },
    });
    await short.price("p3");
    now += 29_000;
    await short.price("p3");
    expect(inventory.calls).toHaveLength(1);
    now += 2_000; // the entry is now older than its TTL
    await short.price("p3");
    expect(inventory.calls).toHaveLength(2);

    const none = createCatalogue(() => inventory.client, { ttlMs: 0, max: 100, meter: telemetry.meter });
    await none.price("p3");
    await none.price("p3");
    expect(inventory.calls).toHaveLength(4);
    await telemetry.shutdown();
  });

  it("keeps at most `max` products, dropping the least recently used", async () => {
    const inventory = fakeInventory();
    for (const id of ["a", "b", "c"]) inventory.known.set(id, 1n);
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const catalogue = createCatalogue(() => inventory.client, {
      ttlMs: 60_000,
      max: 2,
      meter: telemetry.meter,
    });
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
