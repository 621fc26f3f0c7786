import { waitFor } from "@meshwork/testing";
import type { NatsConnection, PublishOptions } from "@nats-io/transport-node";
import { count, isNull, sql } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createOutboxRelay, enqueueEvents, type OutboxRelay, type OutboxRelayOptions } from "./outbox.js";
import { createEventsFixture, type EventsFixture } from "./testing/fixture.js";
import { outbox } from "./testing/schema.js";

describe("transactional outbox and relay (real Postgres and NATS)", () => {
  let f: EventsFixture;
  const relays: OutboxRelay[] = [];
  beforeEach(async () => {
    f = await createEventsFixture();
  });
  afterEach(async () => {
    for (const r of relays.splice(0)) await r.stop();
    await f.close();
  });

  const relay = (js = f.js, batchSize = 50, options: Partial<OutboxRelayOptions> = {}) => {
    const r = createOutboxRelay({
      database: f.database,
      table: outbox,
      js,
      logger: f.logger,
      tracer: f.telemetry.tracer,
      meter: f.telemetry.meter,
      batchSize,
      pollMs: 60_000, // only NOTIFY wakes it in these tests, unless stated
      retentionMs: 3_600_000,
      ...options,
    });
    relays.push(r);
    return r;
  };

  it("publishes committed events with CloudEvents headers and Nats-Msg-Id, woken by NOTIFY", async () => {
    const r = relay();
    await r.start();
    const events = [f.event(1), f.event(2), f.event(3)];
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, events));
    await waitFor(async () => (await f.jsm.streams.info(f.stream)).state.messages === 3, {
      what: "3 messages",
    });
    const first = await f.jsm.streams.getMessage(f.stream, { seq: 1 });
    expect(first?.subject).toBe(events[0]?.subject);
    expect(first?.header.get("ce-specversion")).toBe("1.0");
    expect(first?.header.get("ce-id")).toBe(events[0]?.id);
    expect(first?.header.get("ce-type")).toBe("meshwork.users.v1.UserRegistered");
    expect(first?.header.get("ce-source")).toBe("/meshwork/test");
    expect(first?.header.get("ce-time")).toBe(events[0]?.time.toISOString());
    expect(first?.header.get("content-type")).toBe("application/protobuf");
    expect(first?.header.get("Nats-Msg-Id")).toBe(events[0]?.id);
    expect(first?.header.get("traceparent")).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    expect(first?.data).toEqual(events[0]?.data);
    await waitFor(async () => {
      const [row] = await f.database.db.select({ n: count() }).from(outbox).where(isNull(outbox.sentAt));
      return row?.n === 0;
    });
  });

  it("publishes nothing for a transaction that rolled back", async () => {
    const r = relay();
    await expect(
      f.database.db.transaction(async (tx) => {
        await enqueueEvents(tx, outbox, [f.event(1)]);
        throw new Error("state change failed");
      }),
    ).rejects.toThrow("state change failed");
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, [f.event(2)]));
    expect(await r.drainOnce()).toBe(1);
    expect(await r.drainOnce()).toBe(0);
    expect((await f.jsm.streams.info(f.stream)).state.messages).toBe(1);
  });

  it("never has two relays publish the same row (FOR UPDATE SKIP LOCKED)", async () => {
    const publishes = new Map<string, number>();
    // The relay publishes through the JetStream client's connection (acks pipelined on a reply
    // subscription): count what it sends there, by Nats-Msg-Id.
    const spy = (js: typeof f.js) => {
      const nc = (js as unknown as { nc: NatsConnection }).nc;
      const counted = new Proxy(nc, {
        get(target, prop, recv) {
          if (prop !== "publish") return Reflect.get(target, prop, recv);
          return (subject: string, data: Uint8Array, opts: PublishOptions) => {
            const id = opts.headers?.get("Nats-Msg-Id") ?? "";
            publishes.set(id, (publishes.get(id) ?? 0) + 1);
            return target.publish(subject, data, opts);
          };
        },
      });
      return new Proxy(js, {
        get: (target, prop, recv) => (prop === "nc" ? counted : Reflect.get(target, prop, recv)),
      });
    };
    const a = relay(spy(f.js), 20);
    const b = relay(spy(f.js), 20);
    const total = 400;
    for (let i = 0; i < total; i += 50) {
      await f.database.db.transaction((tx) =>
        enqueueEvents(
          tx,
          outbox,
          Array.from({ length: 50 }, (_, j) => f.event(i + j)),
        ),
      );
    }
    let sent = 0;
    while (sent < total) {
      const [x, y] = await Promise.all([a.drainOnce(), b.drainOnce()]);
      sent += x + y;
    }
    expect(sent).toBe(total);
    expect(publishes.size).toBe(total);
    expect([...publishes.values()].every((n) => n === 1)).toBe(true);
    expect((await f.jsm.streams.info(f.stream)).state.messages).toBe(total);
  });

  it("fails the batch and leaves its rows unsent when the broker refuses a message (no stream on its subject)", async () => {
    const r = relay();
    const stray = { ...f.event(1), subject: `${f.namespace}nostream.${f.stream}` };
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, [f.event(2), stray]));
    await expect(r.drainOnce()).rejects.toThrow(/no stream/);
    const [row] = await f.database.db.select({ n: count() }).from(outbox).where(isNull(outbox.sentAt));
    expect(row?.n).toBe(2);
  });

  it("with retentionMs 0, deletes the rows it published as it claims them, and keeps those of a refused batch", async () => {
    const r = relay(f.js, 50, { retentionMs: 0 });
    const events = [f.event(1), f.event(2), f.event(3)];
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, events));
    expect(await r.drainOnce()).toBe(3);
    expect((await f.jsm.streams.info(f.stream)).state.messages).toBe(3);
    const third = await f.jsm.streams.getMessage(f.stream, { seq: 3 });
    expect(third?.header.get("Nats-Msg-Id")).toBe(events[2]?.id);
    expect((await f.database.db.select({ n: count() }).from(outbox))[0]?.n).toBe(0);

    const stray = { ...f.event(4), subject: `${f.namespace}nostream.${f.stream}` };
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, [f.event(5), stray]));
    await expect(r.drainOnce()).rejects.toThrow(/no stream/);
    const [row] = await f.database.db.select({ n: count() }).from(outbox).where(isNull(outbox.sentAt));
    expect(row?.n).toBe(2);
  });

  it("marks rows sent in a transaction that does not wait for the WAL flush", async () => {
    // The relay's transaction, seen from inside: the setting in force when it marks rows sent.
    // The probe is queued on the transaction's connection right behind the relay's own statements
    // sent through `execute` (the claim, a statement prepared once, follows them).
    const settings: string[] = [];
    const probe = sql`select current_setting('synchronous_commit') as v`;
    type Tx = Parameters<Parameters<typeof f.database.db.transaction>[0]>[0];
    const probedAfterExecute = (t: Tx) => (query: Parameters<Tx["execute"]>[0]) => {
      const raw = t.execute(query);
      return new Proxy(raw, {
        get(q, p, r) {
          if (p !== "execute") return Reflect.get(q, p, r);
          return () => {
            const sent = q.execute();
            void t.execute(probe).then((rows) => {
              settings.push(String((rows as unknown as Array<{ v: string }>)[0]?.v));
            });
            return sent;
          };
        },
      });
    };
    const db = new Proxy(f.database.db, {
      get(target, prop, receiver) {
        if (prop !== "transaction") return Reflect.get(target, prop, receiver);
        return (fn: (tx: Tx) => Promise<unknown>) =>
          target.transaction((tx) =>
            fn(
              new Proxy(tx, {
                get(t, p, r) {
                  if (p === "execute") return probedAfterExecute(t);
                  return Reflect.get(t, p, r);
                },
              }),
            ),
          );
      },
    });
    const r = relay(f.js, 10, { database: { ...f.database, db } });
    const setting = async () =>
      ((await f.database.db.execute(probe)) as unknown as Array<{ v: string }>)[0]?.v;
    const before = await setting();
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, [f.event(1), f.event(2)]));
    expect(await r.drainOnce()).toBe(2);
    expect(settings).toEqual(["off"]);
    // Outside the relay's transaction the setting is what it was (`set local` ends with it).
    expect(await setting()).toBe(before);
  });

  it("falls back to polling when no notification arrives", async () => {
    const r = createOutboxRelay({
      database: { ...f.database, listen: async () => async () => {} }, // LISTEN unavailable
      table: outbox,
      js: f.js,
      logger: f.logger,
      tracer: f.telemetry.tracer,
      meter: f.telemetry.meter,
      batchSize: 10,
      pollMs: 100,
      retentionMs: 3_600_000,
    });
    relays.push(r);
    await r.start();
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, [f.event(7)]));
    await waitFor(async () => (await f.jsm.streams.info(f.stream)).state.messages === 1);
  });

  it("prunes sent rows once they are older than the retention period, not before", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      const r = createOutboxRelay({
        database: f.database,
        table: outbox,
        js: f.js,
        logger: f.logger,
        tracer: f.telemetry.tracer,
        meter: f.telemetry.meter,
        batchSize: 10,
        pollMs: 60_000,
        retentionMs: 60_000,
      });
      relays.push(r);
      await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, [f.event(1)]));
      expect(await r.drainOnce()).toBe(1);
      expect(await r.prune()).toBe(0); // sent just now: kept
      vi.setSystemTime(Date.now() + 5 * 60_000); // five minutes later
      expect(await r.prune()).toBe(1);
      expect((await f.database.db.select({ n: count() }).from(outbox))[0]?.n).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
