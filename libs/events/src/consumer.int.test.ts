import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createTelemetry } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { count, eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { observeBacklog } from "./consumer/backlog.js";
import {
  type BatchEventHandler,
  createEventConsumer,
  type EventConsumer,
  type EventHandler,
} from "./consumer.js";
import { listDeadLetters, replayDeadLetter } from "./dlq.js";
import { cloudEventHeaders, type EventEnvelope } from "./envelope.js";
import { createEventsFixture, type EventsFixture, registry } from "./testing/fixture.js";
import { effects, inbox } from "./testing/schema.js";

const DURABLE = "effects";

describe("idempotent consumer, retries and dead letters (real Postgres and NATS)", () => {
  let f: EventsFixture;
  let consumer: EventConsumer | undefined;
  beforeEach(async () => {
    f = await createEventsFixture({ durables: [DURABLE] });
  });
  afterEach(async () => {
    await consumer?.stop();
    consumer = undefined;
    await f.close();
  });

  const start = async (
    handler: EventHandler | BatchEventHandler,
    maxDeliver = 3,
    redactDeadLetter?: (type: string, data: Uint8Array) => Uint8Array,
  ) => {
    consumer = createEventConsumer({
      redactDeadLetter,
      js: f.js,
      database: f.database,
      inbox,
      stream: f.stream,
      durable: DURABLE,
      handlers: { "meshwork.users.v1.UserRegistered": handler },
      registry,
      maxDeliver,
      backoffMs: 50,
      deadLetterSubject: f.dlqSubject,
      logger: f.logger,
      tracer: f.telemetry.tracer,
      meter: f.telemetry.meter,
    });
    await consumer.start();
  };

  /** Publishes an event as the relay would; `msgId` lets a test defeat broker de-duplication. */
  const publish = async (e: EventEnvelope, msgId = e.id, data = e.data) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(e))) h.set(k, v);
    await f.js.publish(e.subject, data, { msgID: msgId, headers: h });
  };

  const effectCount = async (eventId?: string) =>
    (
      await f.database.db
        .select({ n: count() })
        .from(effects)
        .where(eventId ? eq(effects.eventId, eventId) : undefined)
    )[0]?.n ?? 0;

  const applyEffect: EventHandler = async (message, tx, event) => {
    await tx
      .insert(effects)
      .values({ eventId: event.id, value: (message as unknown as { email: string }).email.length });
  };

  it("applies an event delivered twice exactly once", async () => {
    await start(applyEffect);
    const e = f.event(1);
    await publish(e, `${e.id}-a`);
    await publish(e, `${e.id}-b`); // the same event again, past the broker's de-duplication
    const other = f.event(2);
    await publish(other);
    await waitFor(async () => (await effectCount(other.id)) === 1);
    await waitFor(async () => (await f.jsm.consumers.info(f.stream, DURABLE)).num_ack_pending === 0);
    expect(await effectCount(e.id)).toBe(1);
    expect(await effectCount()).toBe(2);
    const inboxRows = await f.database.db.select().from(inbox);
    expect(inboxRows.map((r) => r.eventId).sort()).toEqual([e.id, other.id].sort());
  });

  it("tells the handler when the broker stored the event, and exports the lag from there to the effect", async () => {
    const seen: Date[] = [];
    await start(async (message, tx, event) => {
      seen.push(event.publishTime);
      await applyEffect(message, tx, event);
    });
    const before = Date.now();
    const e = f.event(7);
    await publish(e);
    await waitFor(async () => (await effectCount(e.id)) === 1);
    await waitFor(async () => (await f.jsm.consumers.info(f.stream, DURABLE)).num_ack_pending === 0);
    const after = Date.now();
    expect(seen).toHaveLength(1);
    // The broker's clock is this machine's: stored after the publish began, before the effect.
    expect(seen[0]?.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(seen[0]?.getTime()).toBeLessThanOrEqual(after);

    const server = createServer((req, res) => f.telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(
        new RegExp(
          `events_consumer_lag(_seconds)?_count\\{[^}]*messaging_consumer_group_name="${DURABLE}"[^}]*\\} 1\\b`,
        ),
      );
    } finally {
      server.close();
    }
  });

  it("retries a failing handler with its effect rolled back each time, then applies it once", async () => {
    let calls = 0;
    await start(async (message, tx, event) => {
      calls++;
      await applyEffect(message, tx, event);
      if (event.deliveryCount < 3) throw new Error("downstream hiccup");
    }, 5);
    const e = f.event(3);
    await publish(e);
    await waitFor(async () => (await effectCount(e.id)) === 1);
    expect(calls).toBe(3);
    expect((await f.jsm.streams.info(f.dlqStream)).state.messages).toBe(0);
  });

  it("isolates a failing event from the others applied in the same batch", async () => {
    const events = Array.from({ length: 40 }, (_, i) => f.event(100 + i));
    const poison = events[17]!;
    await start(async (message, tx, event) => {
      await applyEffect(message, tx, event);
      if (event.id === poison.id) throw new Error("this one is broken");
    }, 2);
    // Published back to back, they reach the consumer together and are applied in batches.
    await Promise.all(events.map((e) => publish(e)));
    await waitFor(async () => (await f.jsm.streams.info(f.dlqStream)).state.messages === 1, {
      what: "the broken event dead-lettered",
    });
    await waitFor(async () => (await effectCount()) === 39);
    expect(await effectCount(poison.id)).toBe(0);
    for (const e of events) if (e !== poison) expect(await effectCount(e.id)).toBe(1);
  });

  it("gives a batch handler many events per call, once each, and isolates a failing one", async () => {
    const events = Array.from({ length: 60 }, (_, i) => f.event(300 + i));
    const poison = events[25]!;
    const calls: number[] = [];
    const spans = new Set<string>();
    await start(
      {
        async batch(items, tx) {
          calls.push(items.length);
          // Each item carries its own event's CONSUMER span.
          for (const it of items) spans.add(trace.getSpanContext(it.traceContext)?.spanId ?? "none");
          await tx.insert(effects).values(
            items.map((it) => ({
              eventId: it.event.id,
              value: (it.message as unknown as { email: string }).email.length,
            })),
          );
          if (items.some((it) => it.event.id === poison.id)) throw new Error("this one is broken");
        },
      },
      2,
    );
    await publish(events[0]!); // a duplicate delivery in the same run changes nothing
    await publish(events[0]!, `${events[0]!.id}-again`);
    await Promise.all(events.slice(1).map((e) => publish(e)));
    await waitFor(async () => (await f.jsm.streams.info(f.dlqStream)).state.messages === 1, {
      what: "the broken event dead-lettered",
    });
    await waitFor(async () => (await effectCount()) === 59);
    expect(await effectCount(poison.id)).toBe(0);
    for (const e of events) if (e !== poison) expect(await effectCount(e.id)).toBe(1);
    // Several events went in one call (a batch), and single-event calls isolated the poison.
    expect(Math.max(...calls)).toBeGreaterThan(1);
    expect(calls).toContain(1);
    expect(spans.has("none")).toBe(false);
    expect(spans.size).toBeGreaterThanOrEqual(60);
  });

  it("dead-letters a poison event after maxDeliver deliveries, and replay re-delivers it", async () => {
    let broken = true;
    let calls = 0;
    await start(async (message, tx, event) => {
      calls++;
      if (broken) throw new Error("cannot apply this event");
      await applyEffect(message, tx, event);
    }, 3);
    const poison = f.event(4);
    await publish(poison);
    await waitFor(async () => (await f.jsm.streams.info(f.dlqStream)).state.messages === 1, {
      what: "the poison event in the dead-letter stream",
    });
    expect(calls).toBe(3);
    const [letter] = await listDeadLetters(f.jsm, f.dlqStream);
    expect(letter).toMatchObject({
      eventId: poison.id,
      type: "meshwork.users.v1.UserRegistered",
      originalSubject: poison.subject,
      consumer: DURABLE,
      deliveries: 3,
      error: "cannot apply this event",
    });
    expect(await effectCount()).toBe(0);

    broken = false; // the bug is fixed
    await replayDeadLetter(f.js, f.jsm, f.dlqStream, letter!.seq);
    await waitFor(async () => (await effectCount(poison.id)) === 1, { what: "the replayed event applied" });
    expect(await listDeadLetters(f.jsm, f.dlqStream)).toEqual([]);
  });

  it("stores a dead letter redacted: its data through redactDeadLetter, its error without query parameters", async () => {
    const seen: string[] = [];
    const redact = (type: string, _data: Uint8Array) => {
      seen.push(type);
      return new TextEncoder().encode("redacted");
    };
    await start(
      async () => {
        throw new Error("Failed query: insert into t (h) values ($1)\nparams: scrypt$c2FsdA$a2V5");
      },
      1,
      redact,
    );
    await publish(f.event(5));
    await waitFor(async () => (await f.jsm.streams.info(f.dlqStream)).state.messages === 1, {
      what: "the failing event in the dead-letter stream",
    });
    const [letter] = await listDeadLetters(f.jsm, f.dlqStream);
    expect(seen).toEqual(["meshwork.users.v1.UserRegistered"]);
    expect(letter?.error).toBe("Failed query: insert into t (h) values ($1) params: [redacted]");
    const stored = await f.jsm.streams.getMessage(f.dlqStream, { seq: letter!.seq });
    expect(new TextDecoder().decode(stored?.data)).toBe("redacted");
  });

  it("exports its backlog from the broker: events not yet delivered (lag) and dead letters waiting", async () => {
    const server = createServer((req, res) => f.telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    /** The gauge's value for this test's consumer, or undefined when not exported. */
    const gauge = async (name: string) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`${name}{`) && l.includes(`messaging_consumer_group_name="${DURABLE}"`));
      return line === undefined ? undefined : Number(line.split(" ").at(-1));
    };
    try {
      // Stored before the consumer runs: three events pending, none delivered yet.
      const stop = observeBacklog({
        js: f.js,
        consumer: await f.js.consumers.get(f.stream, DURABLE),
        durable: DURABLE,
        deadLetterSubject: f.dlqSubject,
        meter: f.telemetry.meter,
        minIntervalMs: 0,
      });
      for (const n of [11, 12, 13]) await publish(f.event(n));
      expect(await gauge("events_consumer_pending")).toBe(3);
      expect(await gauge("events_dlq_depth")).toBe(0);
      stop();

      // The running consumer observes its own: applied, the lag is 0; a poison event waits in
      // the dead-letter stream.
      await start(async (message, tx, event) => {
        if (event.id === poison.id) throw new Error("cannot apply this event");
        await applyEffect(message, tx, event);
      }, 1);
      const poison = f.event(14);
      await publish(poison);
      await waitFor(async () => (await gauge("events_dlq_depth")) === 1, {
        what: "the dead-letter depth to be 1",
        timeoutMs: 15_000,
      });
      await waitFor(async () => (await effectCount()) === 3);
      await waitFor(async () => (await gauge("events_consumer_pending")) === 0, { timeoutMs: 15_000 });
      // Applied (committed) is not yet acked: the ack of the last event goes out after its commit,
      // so a single read can still catch it pending on a loaded machine.
      await waitFor(async () => (await gauge("events_consumer_ack_pending")) === 0, {
        what: "the consumer's ack-pending gauge to be 0",
        timeoutMs: 15_000,
      });
    } finally {
      server.close();
    }
  });

  it("processes an event in a CONSUMER span that is the child of its publish span and links to it", async () => {
    const exporter = new InMemorySpanExporter();
    const traced = createTelemetry({
      serviceName: "events-consumer",
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    consumer = createEventConsumer({
      js: f.js,
      database: f.database,
      inbox,
      stream: f.stream,
      durable: DURABLE,
      handlers: { "meshwork.users.v1.UserRegistered": applyEffect },
      registry,
      maxDeliver: 3,
      backoffMs: 50,
      deadLetterSubject: f.dlqSubject,
      logger: f.logger,
      tracer: traced.tracer,
      meter: f.telemetry.meter,
    });
    await consumer.start();
    // As the relay sends it: the publish span's context in the message's headers.
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const publishSpanId = "00f067aa0ba902b7";
    const e = f.event(21);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(e))) h.set(k, v);
    h.set("traceparent", `00-${traceId}-${publishSpanId}-01`);
    await f.js.publish(e.subject, e.data, { msgID: e.id, headers: h });
    await waitFor(async () => (await effectCount(e.id)) === 1);
    const span = await waitFor(() =>
      exporter.getFinishedSpans().find((s) => s.attributes["messaging.message.id"] === e.id),
    );
    expect(span.kind).toBe(SpanKind.CONSUMER);
    expect(span.name).toBe(`process ${e.subject}`);
    expect(span.spanContext().traceId).toBe(traceId);
    expect(span.parentSpanContext?.spanId).toBe(publishSpanId);
    expect(span.links.map((l) => [l.context.traceId, l.context.spanId])).toEqual([[traceId, publishSpanId]]);
    expect(span.attributes["messaging.operation.type"]).toBe("process");
    await traced.shutdown();
  });

  // Review h19seal2: a failed statement's error holds its parameters (an event's email, name,
  // hash); the CONSUMER span's exception event and status leave the process over OTLP.
  it("exports a failed event's span with its error scrubbed: no statement parameters", async () => {
    const exporter = new InMemorySpanExporter();
    const traced = createTelemetry({
      serviceName: "events-consumer",
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    consumer = createEventConsumer({
      js: f.js,
      database: f.database,
      inbox,
      stream: f.stream,
      durable: DURABLE,
      handlers: {
        "meshwork.users.v1.UserRegistered": async () => {
          throw new Error(
            "Failed query: insert into users values ($1, $2)\nparams: ada@example.com,scrypt$c2FsdA$a2V5",
          );
        },
      },
      registry,
      maxDeliver: 1,
      backoffMs: 50,
      deadLetterSubject: f.dlqSubject,
      logger: f.logger,
      tracer: traced.tracer,
      meter: f.telemetry.meter,
    });
    await consumer.start();
    const e = f.event(22);
    await publish(e);
    const span = await waitFor(() =>
      exporter.getFinishedSpans().find((s) => s.attributes["messaging.message.id"] === e.id),
    );
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.status.message).toBe(
      "Error: Failed query: insert into users values ($1, $2)\nparams: [redacted]",
    );
    expect(span.events.map((ev) => ev.name)).toEqual(["exception"]);
    const exported = JSON.stringify({ status: span.status, events: span.events });
    for (const clear of ["ada@example.com", "scrypt$"]) expect(exported, clear).not.toContain(clear);
    await traced.shutdown();
  });

  it("dead-letters an undecodable message at once", async () => {
    let calls = 0;
    await start(async () => {
      calls++;
    });
    const e = f.event(5);
    await publish(e, e.id, new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    await waitFor(async () => (await f.jsm.streams.info(f.dlqStream)).state.messages === 1);
    const [letter] = await listDeadLetters(f.jsm, f.dlqStream);
    expect(letter?.deliveries).toBe(1);
    expect(letter?.error).toContain("not a valid meshwork.users.v1.UserRegistered");
    expect(calls).toBe(0);
  });

  it("dead-letters an event whose ce-time header is not a timestamp, naming the header; applies a valid one", async () => {
    const times: Date[] = [];
    await start(async (_message, _tx, event) => {
      times.push(event.time);
    });
    const bad = f.event(6);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(bad))) h.set(k, v);
    h.set("ce-time", "yesterday");
    await f.js.publish(bad.subject, bad.data, { msgID: bad.id, headers: h });
    const good = f.event(7);
    await publish(good);
    await waitFor(async () => (await f.jsm.streams.info(f.dlqStream)).state.messages === 1);
    const [letter] = await listDeadLetters(f.jsm, f.dlqStream);
    expect(letter?.deliveries).toBe(1);
    expect(letter?.error).toBe('the message\'s ce-time header is not an RFC 3339 timestamp: "yesterday"');
    await waitFor(() => times.length === 1);
    expect(times.map((t) => t.toISOString())).toEqual([good.time.toISOString()]);
  });
});
