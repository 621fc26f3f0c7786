import type { DescMessage, MessageShape, Registry } from "@bufbuild/protobuf";
import type { AnyTransaction, DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import {
  type Context,
  context,
  type Meter,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { sql } from "drizzle-orm";
import { decodeEvent, EventHeaders, UndecodableEventError } from "./envelope.js";
import type { InboxTable } from "./inbox.js";

type AnyTx = AnyTransaction;

/** What a handler receives besides the decoded message. */
export interface EventContext {
  id: string;
  type: string;
  source: string;
  time: Date;
  subject: string;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /**
   * When the broker stored the event (JetStream's timestamp): the time since then is how far
   * this consumer lags behind the stream.
   */
  publishTime: Date;
}

/** Applies one event inside the transaction that also records it in the inbox. */
export type EventHandler<Desc extends DescMessage = DescMessage> = (
  message: MessageShape<Desc>,
  tx: AnyTx,
  event: EventContext,
) => Promise<void>;

/** One event of a batch given to a {@link BatchEventHandler}. */
export interface BatchItem<Desc extends DescMessage = DescMessage> {
  message: MessageShape<Desc>;
  event: EventContext;
  /**
   * The event's own trace context (its CONSUMER span, child of the request that caused it).
   * The batch runs in the first event's context; run per-event work such as a log line in this
   * one (`context.with(item.traceContext, ...)`) to keep it in its own trace.
   */
  traceContext: Context;
}

/**
 * Applies several events of one type at once, inside the transaction that also records them in
 * the inbox: for effects that are one statement for many rows (a multi-row insert), which
 * saves a database round trip per event. Gets consecutive events of its type in stream order;
 * if it throws, the events are applied again one per call, each in a savepoint of its own, so
 * a failure stays with its event. It runs in the trace context of the first event.
 */
export interface BatchEventHandler<Desc extends DescMessage = DescMessage> {
  batch(items: BatchItem<Desc>[], tx: AnyTx): Promise<void>;
}

/** Headers added to a dead letter, beside the original CloudEvents headers. */
export const DeadLetterHeaders = {
  subject: "dlq-original-subject",
  stream: "dlq-stream",
  consumer: "dlq-consumer",
  deliveries: "dlq-deliveries",
  error: "dlq-error",
  time: "dlq-time",
} as const;

export interface EventConsumerOptions {
  js: JetStreamClient;
  // biome-ignore lint/suspicious/noExplicitAny: consumers work with any service's schema
  database: DatabaseHandle<any>;
  inbox: InboxTable;
  stream: string;
  /** The durable consumer (declared with `provision`). Also the inbox's consumer key. */
  durable: string;
  /** Handlers by event type (full message name); other types on the subject are acked and skipped. */
  handlers: Record<string, EventHandler | BatchEventHandler>;
  /** Resolves `ce-type` to a schema. */
  registry: Registry;
  maxDeliver: number;
  backoffMs: number;
  /** Most events applied in one transaction. Default 256. */
  maxBatch?: number;
  /** Subject dead letters are published on, e.g. `dlq.notifications`. */
  deadLetterSubject: string;
  logger: Logger;
  tracer: Tracer;
  meter: Meter;
}

/** A running consumer. */
export interface EventConsumer {
  start(): Promise<void>;
  /** Stops fetching and waits for the message in progress. */
  stop(): Promise<void>;
}

const natsGetter: TextMapGetter<JsMsg["headers"]> = {
  get: (carrier, key) => carrier?.get(key) || undefined,
  keys: (carrier) => (carrier ? [...carrier.keys()] : []),
};

/**
 * Consumes a durable pull consumer with exactly-once effect on at-least-once delivery: each
 * event's handler runs in a transaction (a savepoint of a batch's transaction) that also inserts
 * (consumer, event id) into the inbox, and a redelivered event whose row exists is acked without
 * running again. Events that arrive together are applied in one transaction, one commit. A failing handler is
 * nak'ed with exponential backoff; at `maxDeliver` deliveries, or at once for a message that
 * cannot be decoded, the message goes to the dead-letter subject with the error and the delivery
 * count, and is terminated on its stream.
 */
export function createEventConsumer(options: EventConsumerOptions): EventConsumer {
  const { js, database, inbox, logger, tracer, meter } = options;
  const attrs = { "messaging.consumer.group.name": options.durable };
  const processed = meter.createCounter("events.consumer.processed", { description: "Events applied" });
  const duplicates = meter.createCounter("events.consumer.duplicates", {
    description: "Redelivered events found in the inbox and acked with no effect",
  });
  const failed = meter.createCounter("events.consumer.failed", { description: "Handler failures (nak'ed)" });
  const redelivered = meter.createCounter("events.consumer.redelivered", {
    description: "Deliveries after the first",
  });
  const deadLettered = meter.createCounter("events.consumer.dead_lettered", {
    description: "Events moved to the dead-letter stream",
  });
  const lag = meter.createHistogram("events.consumer.lag", {
    description: "Time from the broker storing an event to its effect being committed",
    unit: "s",
    advice: {
      explicitBucketBoundaries: [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
      ],
    },
  });

  let messages: ConsumerMessages | undefined;
  let loop: Promise<void> | undefined;

  async function deadLetter(msg: JsMsg, error: string): Promise<void> {
    const h = natsHeaders();
    for (const [k, v] of msg.headers ?? []) for (const x of v) h.append(k, x);
    h.set(DeadLetterHeaders.subject, msg.subject);
    h.set(DeadLetterHeaders.stream, msg.info.stream);
    h.set(DeadLetterHeaders.consumer, options.durable);
    h.set(DeadLetterHeaders.deliveries, String(msg.info.deliveryCount));
    h.set(DeadLetterHeaders.error, error.slice(0, 1024).replace(/[\r\n]+/g, " "));
    h.set(DeadLetterHeaders.time, new Date().toISOString());
    await js.publish(options.deadLetterSubject, msg.data, {
      headers: h,
      msgID: `dlq:${options.durable}:${msg.info.stream}:${msg.info.streamSequence}`,
    });
    msg.term(error.slice(0, 200));
    deadLettered.add(1, attrs);
    logger.warn(
      {
        event_id: msg.headers?.get(EventHeaders.id),
        subject: msg.subject,
        deliveries: msg.info.deliveryCount,
        error,
      },
      "event dead-lettered",
    );
  }

  /** A message that passed the checks and waits to be applied in a batch. */
  interface Pending {
    msg: JsMsg;
    span: Span;
    ctx: Context;
    handler: EventHandler | BatchEventHandler;
    message: ReturnType<typeof decodeEvent>["message"];
    event: EventContext;
    outcome?: "applied" | "duplicate" | { error: unknown };
  }

  /** Opens the message's CONSUMER span and settles what needs no handler; returns the rest. */
  async function admit(msg: JsMsg): Promise<Pending | undefined> {
    const h = msg.headers;
    const id = h?.get(EventHeaders.id) ?? "";
    const type = h?.get(EventHeaders.type) ?? "";
    if (msg.info.deliveryCount > 1) redelivered.add(1, attrs);
    const parent = propagation.extract(ROOT_CONTEXT, h, natsGetter);
    const span = tracer.startSpan(
      `process ${msg.subject}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": msg.subject,
          "messaging.message.id": id,
          "messaging.consumer.group.name": options.durable,
          "cloudevents.event_type": type,
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    const handler = options.handlers[type];
    try {
      if (!id) {
        await context.with(ctx, () => deadLetter(msg, "the message has no ce-id header"));
      } else if (!handler) {
        msg.ack(); // an event type this consumer does not handle
      } else {
        const decoded = decodeEvent(options.registry, type, msg.data);
        const event: EventContext = {
          id,
          type,
          source: h?.get(EventHeaders.source) ?? "",
          time: new Date(h?.get(EventHeaders.time) || Date.now()),
          subject: msg.subject,
          deliveryCount: msg.info.deliveryCount,
          publishTime: msg.time,
        };
        return { msg, span, ctx, handler, message: decoded.message, event };
      }
    } catch (err) {
      if (err instanceof UndecodableEventError) {
        await context.with(ctx, () => deadLetter(msg, err.message)).catch((e) => unsettled(e, id));
      } else {
        unsettled(err, id);
      }
    }
    span.end();
    return undefined;
  }

  function unsettled(err: unknown, id: string): void {
    // Dead-lettering itself failed (NATS away): the message will be redelivered.
    logger.error({ err: String(err), event_id: id }, "event could not be settled");
  }

  /**
   * Applies a batch in one transaction: one multi-row inbox insert tells which events are new,
   * their handlers run, one commit (one WAL flush) covers them all. If anything in the batch
   * fails, the transaction is rolled back and the batch is applied again with each event in a
   * savepoint of its own, so a failing handler rolls back its own effect and inbox row only.
   * Acks go out after the commit; failures are nak'ed with backoff or dead-lettered.
   */
  async function applyBatch(batch: Pending[]): Promise<void> {
    try {
      await database.db.transaction(async (tx) => {
        // One statement of one shape whatever the batch's size (the ids as one array parameter):
        // prepared once, and no per-row query building.
        const rows = await tx
          .insert(inbox)
          .select(
            sql`select ${options.durable}, unnest(${sql.param(batch.map((p) => p.event.id))}::text[]), now()`,
          )
          .onConflictDoNothing()
          .returning({ eventId: inbox.eventId });
        const fresh = new Set(rows.map((r) => r.eventId));
        const toApply: Pending[] = [];
        for (const p of batch) {
          // The first of several deliveries of one event in a batch is the one that applies.
          if (fresh.delete(p.event.id)) toApply.push(p);
          else p.outcome = "duplicate";
        }
        for (let i = 0; i < toApply.length; ) {
          const p = toApply[i] as Pending;
          const handler = p.handler;
          if (typeof handler === "function") {
            await context.with(p.ctx, () => handler(p.message, tx, p.event));
            i++;
            continue;
          }
          // A run of consecutive events of this batch handler's type goes in one call.
          let end = i + 1;
          while (end < toApply.length && toApply[end]?.handler === handler) end++;
          const run = toApply.slice(i, end);
          await context.with(p.ctx, () => handler.batch(run.map(batchItem), tx));
          i = end;
        }
        for (const p of toApply) p.outcome = "applied";
      });
    } catch (error) {
      if (batch.length === 1 && batch[0]) batch[0].outcome = { error };
      else await applyEachInSavepoint(batch);
    }
    // Settled back to back, with no await between the acks: nats.js writes what was queued in
    // one microtask, so the acks of a whole batch leave in one socket write, not one each.
    const waits: Promise<void>[] = [];
    for (const p of batch) {
      let wait: Promise<void> | undefined;
      try {
        wait = context.with(p.ctx, () => settle(p));
      } catch (err) {
        unsettled(err, p.event.id); // the connection closed under the ack: it will be redelivered
      }
      if (wait) waits.push(wait.catch((e) => unsettled(e, p.event.id)).finally(() => p.span.end()));
      else p.span.end();
    }
    await Promise.all(waits);
  }

  function batchItem(p: Pending): BatchItem {
    return { message: p.message, event: p.event, traceContext: p.ctx };
  }

  async function applyEachInSavepoint(batch: Pending[]): Promise<void> {
    try {
      await database.db.transaction(async (tx) => {
        for (const p of batch) {
          await context.with(p.ctx, async () => {
            try {
              const fresh = await tx.transaction(async (sp) => {
                const rows = await sp
                  .insert(inbox)
                  .values({ consumer: options.durable, eventId: p.event.id })
                  .onConflictDoNothing()
                  .returning({ eventId: inbox.eventId });
                if (rows.length === 0) return false;
                const handler = p.handler;
                if (typeof handler === "function") await handler(p.message, sp, p.event);
                else await handler.batch([batchItem(p)], sp);
                return true;
              });
              p.outcome = fresh ? "applied" : "duplicate";
            } catch (error) {
              p.outcome = { error };
            }
          });
        }
      });
    } catch (error) {
      // The commit itself failed: nothing of the batch was applied.
      for (const p of batch) p.outcome = { error };
    }
  }

  /** Acks, naks or dead-letters; returns a promise only when it has to wait (dead-lettering). */
  function settle(p: Pending): Promise<void> | undefined {
    const { msg, span, event } = p;
    if (p.outcome === "applied" || p.outcome === "duplicate") {
      msg.ack();
      if (p.outcome === "applied") {
        processed.add(1, attrs);
        lag.record(Math.max(0, Date.now() - event.publishTime.getTime()) / 1000, attrs);
        logger.debug({ event_id: event.id, type: event.type }, "event processed");
      } else {
        duplicates.add(1, attrs);
        span.setAttribute("meshwork.duplicate", true);
      }
      return;
    }
    const err = p.outcome?.error;
    failed.add(1, attrs);
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
    if (msg.info.deliveryCount >= options.maxDeliver) {
      return deadLetter(msg, err instanceof Error ? err.message : String(err));
    }
    const delay = Math.min(30_000, options.backoffMs * 2 ** (msg.info.deliveryCount - 1));
    msg.nak(delay);
    logger.warn(
      {
        event_id: event.id,
        type: event.type,
        deliveries: msg.info.deliveryCount,
        retry_in_ms: delay,
        err: String(err),
      },
      "event handler failed; will retry",
    );
  }

  return {
    async start() {
      const consumer = await js.consumers.get(options.stream, options.durable);
      messages = await consumer.consume({ max_messages: 256 });
      const iterator = messages;
      // The reader queues what arrives; the applier takes everything queued as one batch, so
      // under load a transaction carries many events and when idle each goes through at once.
      const queue: JsMsg[] = [];
      let wake: (() => void) | undefined;
      let reading = true;
      const reader = (async () => {
        for await (const msg of iterator) {
          queue.push(msg);
          wake?.();
        }
      })()
        .catch((err) => logger.error({ err: String(err) }, "event consumer stopped"))
        .finally(() => {
          reading = false;
          wake?.();
        });
      const applier = (async () => {
        while (reading || queue.length > 0) {
          if (queue.length === 0) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
            continue;
          }
          const admitted: Pending[] = [];
          for (const msg of queue.splice(0, options.maxBatch ?? 256)) {
            const p = await admit(msg);
            if (p) admitted.push(p);
          }
          if (admitted.length > 0) await applyBatch(admitted);
        }
      })();
      loop = Promise.all([reader, applier]).then(() => {});
    },
    async stop() {
      await messages?.close();
      await loop;
    },
  };
}

export { UndecodableEventError };
