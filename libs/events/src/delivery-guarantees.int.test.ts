import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { openDatabase } from "@meshwork/db";
import { createLogger } from "@meshwork/telemetry";
import { adminUrl, captureLogs, waitFor } from "@meshwork/testing";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { count, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { createEventConsumer, type EventConsumer, type EventHandler } from "./consumer.js";
import { cloudEventHeaders, type EventEnvelope } from "./envelope.js";
import { createEventsFixture, type EventsFixture, registry } from "./testing/fixture.js";
import { effects, inbox } from "./testing/schema.js";
import { provision } from "./topology.js";

const DURABLE = "effects";
const ACK_WAIT_MS = 2_000;

/** Polls `probe` every 100 ms for `ms` and fails as soon as it is not true. */
async function staysTrue(probe: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!(await probe())) throw new Error(`no longer true: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("dead letters stay dead, and an outage of the consumer's database fails no event (real Postgres and NATS)", () => {
  let f: EventsFixture | undefined;
  let consumer: EventConsumer | undefined;
  afterEach(async () => {
    await consumer?.stop();
    consumer = undefined;
    await f?.close();
    f = undefined;
  });

  const setUp = async (handler: EventHandler, maxDeliver: number) => {
    const fx = await createEventsFixture({ durables: [DURABLE], ackWaitMs: ACK_WAIT_MS });
    f = fx;
    const logs = captureLogs();
    consumer = createEventConsumer({
      js: fx.js,
      database: fx.database,
      inbox,
      stream: fx.stream,
      durable: DURABLE,
      handlers: { "meshwork.users.v1.UserRegistered": handler },
      registry,
      maxDeliver,
      backoffMs: 50,
      deadLetterSubject: fx.dlqSubject,
      logger: createLogger({ service: "events-test", level: "info", destination: logs.destination }),
      tracer: fx.telemetry.tracer,
      meter: fx.telemetry.meter,
    });
    await consumer.start();
    return { fx, logs };
  };

  const publish = async (fx: EventsFixture, e: EventEnvelope) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(e))) h.set(k, v);
    await fx.js.publish(e.subject, e.data, { msgID: e.id, headers: h });
  };
  const dlqCount = async (fx: EventsFixture) => (await fx.jsm.streams.info(fx.dlqStream)).state.messages;

  it("never delivers a dead-lettered event again, for longer than the ack wait", async () => {
    let calls = 0;
    const { fx } = await setUp(async () => {
      calls++;
      throw new Error("cannot apply this event");
    }, 2);
    await publish(fx, fx.event(1));
    await waitFor(async () => (await dlqCount(fx)) === 1, { what: "the event dead-lettered" });
    expect(calls).toBe(2);
    // nats-server 2.9 ignores `term(reason)` and redelivered such a message after every ack wait.
    await staysTrue(
      async () => calls === 2 && (await dlqCount(fx)) === 1,
      2 * ACK_WAIT_MS + 1_000,
      "no delivery after the dead letter",
    );
    const info = await fx.jsm.consumers.info(fx.stream, DURABLE);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  }, 60_000);

  it("sets the durable consumer's delivery limit as a backstop, and provisioning again keeps it", async () => {
    const { fx } = await setUp(async () => {}, 3);
    expect((await fx.jsm.consumers.info(fx.stream, DURABLE)).config.max_deliver).toBe(4);
    await provision(fx.jsm, {
      consumers: [
        {
          stream: fx.stream,
          durable: DURABLE,
          filterSubject: `${fx.namespace}meshwork.>`,
          ackWaitMs: ACK_WAIT_MS,
        },
      ],
    });
    const after = await fx.jsm.consumers.info(fx.stream, DURABLE);
    expect(after.config.max_deliver).toBe(4);
    expect(after.config.ack_wait).toBe(ACK_WAIT_MS * 1_000_000);
  });

  it("pauses while its database is unreachable, dead-letters nothing, and applies every event once it is back", async () => {
    const deliveries: number[] = [];
    const { fx, logs } = await setUp(async (message, tx, event) => {
      deliveries.push(event.deliveryCount);
      await tx
        .insert(effects)
        .values({ eventId: event.id, value: (message as unknown as { email: string }).email.length });
    }, 2);
    const effectCount = async () => (await fx.database.db.select({ n: count() }).from(effects))[0]?.n ?? 0;
    await publish(fx, fx.event(0));
    await waitFor(async () => (await effectCount()) === 1, { what: "the first event applied" });

    const admin = await openDatabase(
      {
        url: adminUrl(),
        dataDir: "",
        pool: { max: 1, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 },
      },
      {},
    );
    const db = fx.testDb.name;
    try {
      await admin.db.execute(sql.raw(`ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS false`));
      const blockedAt = Date.now();
      await admin.db.execute(
        sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${db} and pid <> pg_backend_pid()`,
      );
      const during = Array.from({ length: 30 }, (_, i) => fx.event(1 + i));
      for (const e of during) await publish(fx, e);
      // Down for longer than two ack waits: nothing may be failed, nor held messages come back.
      await staysTrue(
        async () => (await dlqCount(fx)) === 0,
        Math.max(0, blockedAt + 2 * ACK_WAIT_MS + 1_000 - Date.now()),
        "nothing dead-lettered during the outage",
      );
      await waitFor(() => logs.lines.some((l) => String(l.msg).startsWith("event consumer paused")), {
        what: "the consumer to report the outage",
      });
    } finally {
      await admin.db.execute(sql.raw(`ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS true`));
      await admin.close();
    }
    await waitFor(async () => (await effectCount()) === 31, { what: "every event applied after the outage" });
    await waitFor(async () => (await fx.jsm.consumers.info(fx.stream, DURABLE)).num_ack_pending === 0);
    expect(await dlqCount(fx)).toBe(0);
    expect((await fx.database.db.select({ n: count() }).from(inbox))[0]?.n).toBe(31);
    // Each event reached the handler once, on its first delivery: the outage counted no delivery.
    expect(deliveries).toHaveLength(31);
    expect(Math.max(...deliveries)).toBe(1);
    const lines = logs.lines.map((l) => String(l.msg));
    expect(lines.filter((m) => m.startsWith("event consumer paused"))).toHaveLength(1);
    expect(lines.filter((m) => m.startsWith("event consumer resumed"))).toHaveLength(1);
    expect(lines.filter((m) => m === "event dead-lettered" || m.startsWith("event handler failed"))).toEqual(
      [],
    );

    const server = createServer((req, res) => fx.telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(/events_consumer_database_outages(_total)?\{[^}]*\} 1\b/);
      expect(text).toMatch(/events_consumer_paused\{[^}]*\} 0\b/);
    } finally {
      server.close();
    }
  }, 90_000);
});
