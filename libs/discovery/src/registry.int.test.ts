import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { connectNats } from "@meshwork/events";
import { startProcess, uniqueName, waitFor } from "@meshwork/testing";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerInstance, removeRegistry, watchRegistry } from "./registry.js";

describe("registry over NATS KV (real NATS)", () => {
  let nc: NatsConnection;
  const bucket = uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_");
  const ttlMs = 1_500;
  beforeAll(async () => {
    nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "discovery-test");
  });
  afterAll(async () => {
    await removeRegistry(nc, bucket);
    await nc.close();
  });

  const register = (service: string, address: string) =>
    registerInstance({
      nc,
      bucket,
      ttlMs,
      service,
      instanceId: randomUUID(),
      address,
      protocols: ["grpc", "connect"],
      version: "1.0.0",
    });

  it("lists registered instances, drops one at once on graceful stop, and one that stops heartbeating within the TTL", async () => {
    const a = await register("payments", "127.0.0.1:50053");
    const b = await register("payments", "127.0.0.1:50063");
    const other = await register("inventory", "127.0.0.1:50052");
    const watcher = await watchRegistry({ nc, bucket, ttlMs });
    await watcher.ready;
    expect(
      watcher
        .instances("payments")
        .map((r) => r.address)
        .sort(),
    ).toEqual(["127.0.0.1:50053", "127.0.0.1:50063"]);
    expect(watcher.instances("inventory")).toHaveLength(1);
    expect(watcher.instances("payments")[0]).toMatchObject({
      protocols: ["grpc", "connect"],
      version: "1.0.0",
    });

    // Graceful: gone at once.
    const t0 = Date.now();
    await b.stop();
    await waitFor(() => watcher.instances("payments").length === 1, { what: "the deregistration" });
    expect(Date.now() - t0).toBeLessThan(1_000);

    // A new instance appears for an existing watcher.
    const c = await register("payments", "127.0.0.1:50073");
    await waitFor(() => watcher.instances("payments").length === 2, { what: "the new instance" });

    // Killed with SIGKILL (a real process: nothing deletes its key, its heartbeat just stops):
    // gone within the TTL, while the others, heartbeating, stay.
    const child = startProcess(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { registerInstance } from "@meshwork/discovery";
         import { connectNats } from "@meshwork/events";
         const nc = await connectNats(${JSON.stringify(process.env.NATS_URL ?? "nats://127.0.0.1:4222")}, "doomed");
         await registerInstance({ nc, bucket: ${JSON.stringify(bucket)}, ttlMs: ${ttlMs}, service: "payments",
           instanceId: "doomed", address: "127.0.0.1:50083", protocols: ["grpc"], version: "1.0.0" });
         console.log("registered");
         setInterval(() => {}, 60_000);`,
      ],
      { cwd: fileURLToPath(new URL("..", import.meta.url)) },
    );
    try {
      await child.waitForLine((l) => l === "registered", 30_000);
      await waitFor(() => watcher.instances("payments").length === 3, { what: "the doomed instance" });
      // Survives a few heartbeats while alive.
      await waitFor(
        () =>
          watcher
            .instances("payments")
            .find((r) => r.instanceId === "doomed" && Date.now() - r.startedAt > ttlMs),
        {
          what: "the doomed instance to outlive one TTL by heartbeating",
        },
      );
      const killedAt = Date.now();
      await child.stop("SIGKILL");
      await waitFor(() => watcher.instances("payments").length === 2, {
        what: "the killed instance to expire",
        timeoutMs: 10_000,
      });
      expect(Date.now() - killedAt).toBeLessThan(ttlMs + 1_500);
      expect(
        watcher
          .instances("payments")
          .map((r) => r.address)
          .sort(),
      ).toEqual(["127.0.0.1:50053", "127.0.0.1:50073"]);
    } finally {
      if (child.child.exitCode === null) await child.stop("SIGKILL");
    }

    await Promise.all([a.stop(), c.stop(), other.stop(), watcher.stop()]);
  });
});
