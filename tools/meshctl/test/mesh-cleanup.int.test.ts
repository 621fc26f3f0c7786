import { cacheBucket } from "@meshwork/cache";
import { connectNats, streamName } from "@meshwork/events";
import { uniqueName } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { removeMeshStreams } from "./mesh-cleanup.js";

const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

describe("removeMeshStreams (the clean-up of every mesh a test starts)", () => {
  it("deletes the namespace's event streams and its services' cache buckets, and nothing of another namespace", async () => {
    const namespace = `${uniqueName("mwclean")}.`;
    const other = `${uniqueName("mwclean")}.`;
    const nc = await connectNats(NATS_URL, "cleanup-test");
    try {
      const jsm = await jetstreamManager(nc);
      const kvm = new Kvm(nc);
      await jsm.streams.add({ name: streamName(namespace, "ORDERS"), subjects: [`${namespace}orders.>`] });
      for (const service of ["gateway", "inventory", "orders", "made-by-scaffold"])
        await kvm.create(cacheBucket(namespace, service), { history: 1 });
      await kvm.create(cacheBucket(other, "orders"), { history: 1 });

      await removeMeshStreams(namespace);

      const left: string[] = [];
      for await (const name of jsm.streams.names()) left.push(name);
      expect(
        left.filter(
          (n) => n.includes(namespace.slice(0, -1)) || n.includes(namespace.slice(0, -1).toUpperCase()),
        ),
      ).toEqual([]);
      expect(left).toContain(`KV_${cacheBucket(other, "orders")}`);
      await jsm.streams.delete(`KV_${cacheBucket(other, "orders")}`);
    } finally {
      await nc.close();
    }
  });
});
