import { waitFor } from "@meshwork/testing";
import { JetStreamApiError } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { count, eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EventsConfig } from "./config.js";
import type { EventConsumer, EventHandler } from "./consumer.js";
import { listDeadLetters } from "./dlq.js";
import { cloudEventHeaders, type EventEnvelope } from "./envelope.js";
import { createForeignConsumer } from "./foreign-consumer.js";
import { meshStreams } from "./streams.js";
import { createEventsFixture, type EventsFixture, registry } from "./testing/fixture.js";
import { deleteNamespaceStreams } from "./testing/index.js";
import { effects, inbox } from "./testing/schema.js";

// One function for every consumer of another service's stream: from the host's name and event
// settings it derives the dead-letter stream and subject and the delivery limits; the owner's
// stream is waited for, never created, never updated.
const SERVICE = "fcsvc";
const DURABLE = "fcsvc-users-sync";

describe("createForeignConsumer (real Postgres and NATS)", () => {
  let f: EventsFixture;
  let consumer: EventConsumer | undefined;
  beforeEach(async () => {
    // No fixture streams: their subjects (`<ns>meshwork.>`) would overlap the owner's USERS stream.
    f = await createEventsFixture({ streams: false });
  });
  afterEach(async () => {
    await consumer?.stop();
    consumer = undefined;
    await deleteNamespaceStreams(f.namespace);
    await f.close();
  });

  const events = (): EventsConfig => ({
    natsUrl: "unused",
    namespace: f.namespace,
    streamReplicas: 1,
    outbox: { batchSize: 256, pollMs: 1_000, retentionMs: 3_600_000 },
    consumer: { maxDeliver: 2, backoffMs: 50, ackWaitMs: 7_000 },
  });

  const publish = async (e: EventEnvelope, msgId = e.id) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(e))) h.set(k, v);
    await f.js.publish(e.subject, e.data, { msgID: msgId, headers: h });
  };

  const effectCount = async (eventId: string) =>
    (await f.database.db.select({ n: count() }).from(effects).where(eq(effects.eventId, eventId)))[0]?.n ?? 0;

  const exists = async (name: string) =>
    f.jsm.streams.info(name).then(
      () => true,
      (err: unknown) => {
        if (err instanceof JetStreamApiError && err.status === 404) return false;
        throw err;
      },
    );

  it("waits for the owner's stream, applies each event once, dead-letters a poison event to dlq.<service>.<durable>, leaves the stream as the owner made it", async () => {
    const users = meshStreams.users(f.namespace);
    let poisonId = "";
    const handler: EventHandler = async (_message, tx, event) => {
      if (event.id === poisonId) throw new Error("poison");
      await tx.insert(effects).values({ eventId: event.id, value: 1 });
    };
    consumer = createForeignConsumer(
      { service: SERVICE, config: events(), nc: f.nc, database: f.database, inbox, logger: f.logger },
      {
        stream: users,
        durable: DURABLE,
        registry,
        handlers: { "meshwork.users.v1.UserRegistered": handler },
        retryMs: 20,
      },
    );
    await consumer.start(); // the stream is missing: start returns, the consumer keeps looking
    const since = Date.now();
    await waitFor(async () => Date.now() - since > 300 && !(await exists(users.name)), {
      what: "looks (20 ms apart) that leave the owner's stream missing",
      timeoutMs: 10_000,
    });

    // The owner declares its stream with its own settings.
    await f.jsm.streams.add({
      name: users.name,
      subjects: users.subjects,
      max_age: 3_600 * 1e9,
      duplicate_window: 90 * 1e9,
      max_msgs_per_subject: 1_000,
    });
    const before = (await f.jsm.streams.info(users.name)).config;
    await waitFor(async () => (await f.jsm.consumers.list(users.name).next()).length === 1, {
      what: "the durable on the owner's stream",
      timeoutMs: 15_000,
    });

    const once = f.event(1);
    const poison = f.event(2);
    poisonId = poison.id;
    const after = f.event(3);
    await publish(once, `${once.id}-a`);
    await publish(once, `${once.id}-b`); // the same event again, past the broker's de-duplication
    await publish(poison);
    await publish(after);

    const deadLetters = meshStreams.deadLetters(f.namespace, SERVICE);
    await waitFor(
      async () =>
        (await exists(deadLetters.name)) && (await listDeadLetters(f.jsm, deadLetters.name)).length === 1,
      {
        what: "the poison event dead-lettered",
        timeoutMs: 20_000,
      },
    );
    await waitFor(async () => (await effectCount(after.id)) === 1, { what: "the later event applied" });
    await waitFor(async () => (await f.jsm.consumers.info(users.name, DURABLE)).num_ack_pending === 0, {
      what: "every delivery settled",
    });
    expect(await effectCount(once.id)).toBe(1);
    expect(await effectCount(poison.id)).toBe(0);

    const [letter] = await listDeadLetters(f.jsm, deadLetters.name);
    expect(letter).toMatchObject({ eventId: poison.id, consumer: DURABLE, deliveries: 2 });
    const stored = await f.jsm.streams.getMessage(deadLetters.name, { seq: letter?.seq ?? 0 });
    expect(stored?.subject).toBe(`${f.namespace}dlq.${SERVICE}.${DURABLE}`);

    const durable = await f.jsm.consumers.info(users.name, DURABLE);
    expect(durable.config.filter_subject).toBe(users.subjects[0]);
    expect(durable.config.max_deliver).toBe(3); // CONSUMER_MAX_DELIVER + 1, the server's backstop
    expect(durable.config.ack_wait).toBe(7_000 * 1_000_000); // CONSUMER_ACK_WAIT_MS, in ns
    expect((await f.jsm.streams.info(users.name)).config).toEqual(before);
  }, 90_000);
});
