import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { cacheBucket } from "@meshwork/cache";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { removeRegistry } from "@meshwork/discovery";
import { connectNats } from "@meshwork/events";
import { deleteNamespaceStreams } from "@meshwork/events/testing";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";
import { createGateway, type Gateway } from "./gateway.js";

const inventoryMain = fileURLToPath(new URL("../../inventory/dist/main.js", import.meta.url));
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

interface ClusterDump {
  clusters: Array<{ name: string; endpoints: Array<{ url: string; health: string; rq_total: number }> }>;
}

describe("the gateway on the discovery registry (two real inventory processes, real NATS and Postgres)", () => {
  const bucket = uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_");
  const namespace = `${uniqueName("t")}.`;
  const ttlMs = 2_000;
  let db: TestDatabase;
  const instances: ManagedProcess[] = [];
  let gateway: Gateway;
  let url: string;
  let adminUrl: string;

  const startInventory = async () => {
    const p = startProcess(process.execPath, [inventoryMain], {
      env: {
        PORT: "0",
        DATABASE_URL: db.url,
        NATS_URL: natsUrl,
        DISCOVERY_BUCKET: bucket,
        DISCOVERY_TTL_MS: String(ttlMs),
        GC_HEAP_GROWING_PERCENT: "40",
        // Its streams and cache bucket in this suite's namespace (removed after): the default
        // namespace's INVENTORY stream and cache bucket on the shared NATS are no test's.
        EVENTS_NAMESPACE: namespace,
      },
    });
    instances.push(p);
    const listening = await p.waitForLog((l) => l.msg === "listening");
    // The service process took its heap growing percent from the environment.
    expect(listening.heapGrowingPercent).toBe(40);
    const port = listening.port as number;
    await p.waitForLog((l) => l.msg === "announced");
    return { p, url: `http://127.0.0.1:${port}` };
  };
  const inventory = async () => {
    const dump = (await (await fetch(`${adminUrl}/clusters?format=json`)).json()) as ClusterDump;
    return dump.clusters.find((c) => c.name === "inventory")?.endpoints ?? [];
  };

  beforeAll(async () => {
    db = await createTestDatabase("mw_gwdisc");
    gateway = createGateway({
      config: loadConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "silent",
        NATS_URL: natsUrl,
        DISCOVERY_BUCKET: bucket,
        DISCOVERY_TTL_MS: String(ttlMs),
        JWKS_URL: "http://127.0.0.1:9/.well-known/jwks.json", // public methods only here
      }),
    });
    ({ url, adminUrl } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    for (const p of instances) if (p.child.exitCode === null) await p.stop();
    const nc = await connectNats(natsUrl, "cleanup");
    await removeRegistry(nc, bucket);
    await (await new Kvm(nc).open(cacheBucket(namespace, "inventory"))).destroy().catch(() => {});
    await nc.close();
    await deleteNamespaceStreams(namespace, natsUrl);
    await db?.drop();
  });

  it("routes to instances as they announce themselves, spreads calls over both, and keeps answering when one is SIGKILLed", async () => {
    const a = await startInventory();
    const b = await startInventory();
    await waitFor(async () => (await inventory()).filter((e) => e.health === "SERVING").length === 2, {
      what: "both instances SERVING at the gateway",
    });
    expect((await inventory()).map((e) => e.url).sort()).toEqual([a.url, b.url].sort());

    // A product (created on one instance; both share the database).
    const direct = createClient(InventoryService, createGrpcTransport({ baseUrl: a.url }));
    const { product } = await direct.createProduct({
      sku: "DISC-1",
      name: "Discovered",
      price: { amountMinor: 100n, currency: "EUR" },
      initialStock: 5n,
    });
    const id = product?.id ?? "";

    const client = createClient(InventoryService, createGrpcTransport({ baseUrl: url }));
    const served = (p: ManagedProcess) =>
      p
        .logs()
        .filter((l) => l.msg === "rpc" && l.method === "/meshwork.inventory.v1.InventoryService/GetProduct")
        .length;
    await Promise.all(Array.from({ length: 200 }, () => client.getProduct({ id })));
    await waitFor(() => served(a.p) + served(b.p) >= 200, { what: "every call logged" });
    expect(Math.min(served(a.p), served(b.p))).toBeGreaterThan(30);

    // Load keeps flowing while b dies without a word: every call still succeeds.
    let stop = false;
    let ok = 0;
    const failures: unknown[] = [];
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          await client.getProduct({ id }).then(
            () => ok++,
            (e: unknown) => failures.push(e),
          );
        }
      }),
    );
    await waitFor(() => ok > 50, { what: "load flowing" });
    const killedAt = Date.now();
    await b.p.stop("SIGKILL");
    await waitFor(async () => (await inventory()).length === 1, {
      what: "the killed instance leaving the cluster",
      timeoutMs: 15_000,
    });
    const gone = Date.now() - killedAt;
    const okAtRemoval = ok;
    await waitFor(() => ok > okAtRemoval + 50, { what: "load flowing after the kill" });
    stop = true;
    await load;
    expect(failures).toEqual([]);
    expect(gone).toBeLessThan(ttlMs + 1_500);
    expect((await inventory()).map((e) => e.url)).toEqual([a.url]);
  });
});
