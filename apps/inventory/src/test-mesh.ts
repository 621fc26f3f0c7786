import { cacheBucket } from "@meshwork/cache";
import { connectNats, streamName } from "@meshwork/events";
import type { Service } from "@meshwork/runtime";
import { createTestDatabase, type TestDatabase, uniqueName } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Redis } from "ioredis";
import { loadConfig } from "./config.js";
import { createInventoryService } from "./server.js";

/** One suite's inventory: a database and an events namespace of its own, and the instances on them. */
export interface TestInventory {
  db: TestDatabase;
  namespace: string;
  /**
   * Starts an inventory instance (port 0, static discovery, silent) on this suite's database and
   * namespace; `env` adds to or overrides that environment.
   */
  start(env?: Record<string, string>): Promise<{ service: Service; url: string }>;
  /** Shuts every instance down, removes the namespace's NATS and Redis state, drops the database. */
  close(): Promise<void>;
}

/** For tests: a fresh database (`<prefix>_<hex>`) and namespace, for {@link TestInventory.start}. */
export async function openTestInventory(prefix: string): Promise<TestInventory> {
  const db = await createTestDatabase(prefix);
  const namespace = `${uniqueName("t")}.`;
  const services: Service[] = [];
  return {
    db,
    namespace,
    async start(env = {}) {
      const service = await createInventoryService(
        loadConfig({
          PORT: "0",
          LOG_LEVEL: "silent",
          DATABASE_URL: db.url,
          DISCOVERY: "static",
          EVENTS_NAMESPACE: namespace,
          ...env,
        }),
      );
      services.push(service);
      const { url } = await service.start();
      return { service, url };
    },
    async close() {
      for (const s of services) await s.shutdown();
      await removeMeshState(namespace);
      await db.drop();
    },
  };
}

/** For tests: removes what an inventory of `namespace` left on NATS (its streams, its cache bucket). */
export async function removeMeshState(namespace: string): Promise<void> {
  const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "inventory-test");
  try {
    const jsm = await jetstreamManager(nc);
    // Its own stream, and those its legacy sync declares (the monolith's CDC, its dead letters).
    for (const base of ["INVENTORY", "LEGACY", "DLQ_INVENTORY"])
      await jsm.streams.delete(streamName(namespace, base)).catch(() => {});
    await (await new Kvm(nc).open(cacheBucket(namespace, "inventory"))).destroy().catch(() => {});
  } finally {
    await nc.close();
  }
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", { lazyConnect: true });
  try {
    await redis.connect();
    const keys = await redis.keys(`${namespace}meshwork:cache:*`);
    if (keys.length > 0) await redis.del(...keys);
  } catch {
    // No Redis on this machine: nothing was written there.
  } finally {
    redis.disconnect();
  }
}
