import { cacheBucket } from "@meshwork/cache";
import { connectNats, streamName } from "@meshwork/events";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Redis } from "ioredis";

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
