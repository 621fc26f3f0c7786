import { generateKeyPairSync, randomUUID } from "node:crypto";
import { connectNats } from "@meshwork/events";
import { uniqueName, waitFor } from "@meshwork/testing";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerInstance, removeRegistry, watchRegistry } from "./registry.js";
import { createRecordSigner, createRecordVerifier } from "./signing.js";

/**
 * The registry on a NATS anyone may write (the shared test server has no authentication): with
 * signed records, a reader uses only the entries each service signed itself.
 */
describe("signed registry records (real NATS without authentication)", () => {
  let nc: NatsConnection;
  const bucket = uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_");
  const users = generateKeyPairSync("ed25519");
  const orders = generateKeyPairSync("ed25519");
  const trust = new Map([
    ["users", users.publicKey],
    ["orders", orders.publicKey],
  ]);
  beforeAll(async () => {
    nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "signing-test");
  });
  afterAll(async () => {
    await removeRegistry(nc, bucket);
    await nc.close();
  });

  const register = (service: string, address: string, key: typeof users.privateKey) =>
    registerInstance({
      nc,
      bucket,
      service,
      instanceId: randomUUID(),
      address,
      protocols: ["grpc"],
      version: "1.0.0",
      sign: createRecordSigner(key),
    });

  it("ignores an endpoint not signed by the service it names: unsigned, signed by another service, or altered", async () => {
    const watcher = await watchRegistry({ nc, bucket, verify: createRecordVerifier(trust) });
    const unchecked = await watchRegistry({ nc, bucket });
    await watcher.ready;
    await unchecked.ready;
    const real = await register("users", "127.0.0.1:50051", users.privateKey);
    // Orders' key signing a `users` record, as a compromised orders would.
    const impostor = await register("users", "127.0.0.1:6661", orders.privateKey);
    // A record with no signature at all, and a real record copied with its address changed.
    const kv = await new Kvm(nc).open(bucket);
    const now = Date.now();
    const fake = {
      service: "users",
      protocols: ["grpc"],
      version: "1.0.0",
      startedAt: now,
      heartbeatAt: now,
    };
    await kv.put(
      "users.unsigned",
      JSON.stringify({ ...fake, instanceId: "unsigned", address: "127.0.0.1:6662" }),
    );
    const copy = JSON.parse((await kv.get(`users.${real.record.instanceId}`))?.string() ?? "{}");
    await kv.put(
      "users.altered",
      JSON.stringify({ ...copy, instanceId: "altered", address: "127.0.0.1:6663" }),
    );
    await kv.put(`users.${randomUUID()}`, JSON.stringify({ ...copy, address: "127.0.0.1:6664" }));
    // A reader without trust takes all five; the verifying one only the real one.
    await waitFor(() => unchecked.instances("users").length === 5, {
      what: "every entry at the unchecked reader",
    });
    expect(watcher.instances("users").map((r) => r.address)).toEqual(["127.0.0.1:50051"]);
    // Orders signing its own record is fine.
    const own = await register("orders", "127.0.0.1:50054", orders.privateKey);
    await waitFor(() => watcher.instances("orders").length === 1, { what: "orders' own record" });
    await Promise.all([real.stop(), impostor.stop(), own.stop(), watcher.stop(), unchecked.stop()]);
  });
});
