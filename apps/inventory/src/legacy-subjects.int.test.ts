import { connectNats, meshStreams, provision, streamName } from "@meshwork/events";
import { waitFor } from "@meshwork/testing";
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LEGACY_SYNC_DURABLE } from "./server.js";
import { openTestInventory, type TestInventory } from "./test-mesh.js";

// Review finding 1: the LEGACY stream also carries the monolith's users (UserChanged, with
// legacy's password hashes); inventory's consumer must never be delivered one.
describe("inventory's legacy consumer", () => {
  let t: TestInventory;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let namespace: string;

  beforeAll(async () => {
    t = await openTestInventory("mw_inv_subj");
    namespace = t.namespace;
    await t.start();
    nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "inventory-subjects-test");
    jsm = await jetstreamManager(nc);
  });

  it("never declares LEGACY (legacy owns it): it serves without it, and its sync starts once legacy creates it", async () => {
    const stream = streamName(namespace, "LEGACY");
    // Started (and SERVING) with no LEGACY stream: its sync looked and did not create it.
    expect(
      await jsm.streams.info(stream).then(
        () => "exists",
        (e: unknown) => String(e),
      ),
    ).toMatch(/stream not found/);
    // Legacy declares it with its own config; inventory's durable appears on it, the config stays.
    await provision(jsm, { streams: [meshStreams.legacy(namespace, { replicas: 1 })] });
    const maxAge = (await jsm.streams.info(stream)).config.max_age;
    await waitFor(
      () =>
        jsm.consumers.info(stream, LEGACY_SYNC_DURABLE).then(
          () => true,
          () => false,
        ),
      { what: "inventory's durable on LEGACY", timeoutMs: 20_000 },
    );
    expect((await jsm.streams.info(stream)).config.max_age).toBe(maxAge);
  });
  afterAll(async () => {
    await nc?.close();
    await t?.close();
  });

  it("reads only ProductChanged: a UserChanged on the LEGACY stream is neither pending nor delivered", async () => {
    const stream = streamName(namespace, "LEGACY");
    const before = await jsm.consumers.info(stream, LEGACY_SYNC_DURABLE);
    expect(before.config.filter_subject).toBe(`${namespace}meshwork.legacy.v1.ProductChanged`);
    const ack = await jetstream(nc).publish(
      `${namespace}meshwork.legacy.v1.UserChanged`,
      new TextEncoder().encode("a user capture (stands for one with a password hash)"),
    );
    expect(ack.stream).toBe(stream);
    const after = await jsm.consumers.info(stream, LEGACY_SYNC_DURABLE);
    expect(after.num_pending).toBe(0);
    expect(after.num_ack_pending).toBe(0);
    expect(after.delivered.consumer_seq).toBe(before.delivered.consumer_seq);
  });
});
