import { fileURLToPath } from "node:url";
import {
  type ManagedProcess,
  startNatsServer,
  startProcess,
  type TestNatsServer,
  waitFor,
} from "@meshwork/testing";
import { jetstream } from "@nats-io/jetstream";
import { count, isNull } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { createEventConsumer, type EventConsumer, type EventHandler } from "./consumer.js";
import { createOutboxRelay, enqueueEvents } from "./outbox.js";
import { createEventsFixture, type EventsFixture, registry } from "./testing/fixture.js";
import { effects, inbox, outbox } from "./testing/schema.js";

const relayFixture = fileURLToPath(new URL("../test/fixtures/relay-process.ts", import.meta.url));
const DURABLE = "effects";

const applyEffect: EventHandler = async (_message, tx, event) => {
  await tx.insert(effects).values({ eventId: event.id, value: 1 });
};

function startConsumer(f: EventsFixture): EventConsumer {
  return createEventConsumer({
    js: f.js,
    database: f.database,
    inbox,
    stream: f.stream,
    durable: DURABLE,
    handlers: { "meshwork.users.v1.UserRegistered": applyEffect },
    registry,
    maxDeliver: 5,
    backoffMs: 50,
    deadLetterSubject: f.dlqSubject,
    logger: f.logger,
    tracer: f.telemetry.tracer,
    meter: f.telemetry.meter,
  });
}

async function enqueueMany(f: EventsFixture, total: number, perTx: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < total; i += perTx) {
    const events = Array.from({ length: Math.min(perTx, total - i) }, (_, j) => f.event(i + j));
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, events));
    ids.push(...events.map((e) => e.id));
  }
  return ids;
}

const countOf = async (f: EventsFixture, table: typeof effects | typeof inbox) =>
  (await f.database.db.select({ n: count() }).from(table))[0]?.n ?? 0;
const unsent = async (f: EventsFixture) =>
  (await f.database.db.select({ n: count() }).from(outbox).where(isNull(outbox.sentAt)))[0]?.n ?? 0;

describe("lossless under failures (real Postgres and NATS)", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  });

  it("delivers and applies every committed event exactly once while the relay is SIGKILLed mid-batch again and again", async () => {
    const f = await createEventsFixture({ durables: [DURABLE] });
    cleanups.push(() => f.close());
    const consumer = startConsumer(f);
    await consumer.start();
    cleanups.push(() => consumer.stop());
    // Enough for several kills to land mid-batch: the relay publishes a batch of 500 with its
    // acks pipelined, and on a quiet machine drained 3,000 in two short lives.
    const total = 12_000;
    const ids = await enqueueMany(f, total, 200);

    let kills = 0;
    let midBatchKills = 0;
    let relay: ManagedProcess | undefined;
    const spawnRelay = () =>
      startProcess(process.execPath, ["--import", "tsx", relayFixture], {
        env: { DATABASE_URL: f.testDb.url, NATS_URL: process.env.NATS_URL, BATCH_SIZE: "500" },
      });
    while (kills < 8 && (await unsent(f)) > 0) {
      relay = spawnRelay();
      await relay.waitForLine((l) => l === "relay started");
      const before = (await f.jsm.streams.info(f.stream)).state.messages;
      // Kill it once it has started publishing, before it has finished.
      await waitFor(
        async () => (await f.jsm.streams.info(f.stream)).state.messages > before || (await unsent(f)) === 0,
        {
          intervalMs: 5,
        },
      );
      const pendingAtKill = await unsent(f);
      await relay.stop("SIGKILL");
      kills++;
      if (pendingAtKill > 0) midBatchKills++;
    }
    // A last relay finishes the job.
    relay = spawnRelay();
    cleanups.push(async () => void (await relay?.stop("SIGKILL")));
    await waitFor(async () => (await unsent(f)) === 0, { timeoutMs: 120_000, what: "the outbox to drain" });
    await waitFor(async () => (await countOf(f, effects)) === total, {
      timeoutMs: 120_000,
      what: "every effect",
    });
    await waitFor(async () => (await f.jsm.consumers.info(f.stream, DURABLE)).num_pending === 0);

    expect(midBatchKills).toBeGreaterThanOrEqual(3);
    expect(await countOf(f, effects)).toBe(total);
    expect(await countOf(f, inbox)).toBe(total);
    const applied = new Set(
      (await f.database.db.select({ id: effects.eventId }).from(effects)).map((r) => r.id),
    );
    expect(ids.every((id) => applied.has(id))).toBe(true);
    expect((await f.jsm.streams.info(f.dlqStream)).state.messages).toBe(0);
  }, 300_000);

  it("keeps events while NATS is down and drains the backlog once it is back", async () => {
    const nats: TestNatsServer = await startNatsServer();
    cleanups.push(() => nats.remove());
    const f = await createEventsFixture({ natsUrl: nats.url, durables: [DURABLE] });
    cleanups.push(() => f.close());
    const consumer = startConsumer(f);
    await consumer.start();
    cleanups.push(() => consumer.stop());
    const relay = createOutboxRelay({
      database: f.database,
      table: outbox,
      js: jetstream(f.nc),
      logger: f.logger,
      tracer: f.telemetry.tracer,
      meter: f.telemetry.meter,
      batchSize: 100,
      pollMs: 200,
      retentionMs: 3_600_000,
      publishTimeoutMs: 1_000,
    });
    await relay.start();
    cleanups.push(() => relay.stop());

    await enqueueMany(f, 100, 50);
    await waitFor(async () => (await countOf(f, effects)) === 100, { what: "the first events applied" });

    await nats.stop();
    const during = await enqueueMany(f, 400, 50);
    // The backlog grows while the broker is away, and nothing is marked sent.
    await waitFor(() => relay.backlog.count === 400, { what: "the backlog to show 400 unsent rows" });
    expect(await unsent(f)).toBe(400);

    await nats.start();
    await waitFor(async () => (await unsent(f)) === 0, { timeoutMs: 60_000, what: "the backlog to drain" });
    await waitFor(async () => (await countOf(f, effects)) === 500, {
      timeoutMs: 60_000,
      what: "every effect",
    });
    const applied = new Set(
      (await f.database.db.select({ id: effects.eventId }).from(effects)).map((r) => r.id),
    );
    expect(during.every((id) => applied.has(id))).toBe(true);
    await waitFor(() => relay.backlog.count === 0, { what: "the relay to report an empty backlog" });
  }, 180_000);
});
