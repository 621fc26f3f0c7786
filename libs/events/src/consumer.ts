import type { DescMessage, MessageShape, Registry } from "@bufbuild/protobuf";
import type { AnyTransaction, DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import {
  context,
  type Meter,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
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
}

/** Applies one event inside the transaction that also records it in the inbox. */
export type EventHandler<Desc extends DescMessage = DescMessage> = (
  message: MessageShape<Desc>,
  tx: AnyTx,
  event: EventContext,
) => Promise<void>;

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
  handlers: Record<string, EventHandler>;
  /** Resolves `ce-type` to a schema. */
  registry: Registry;
  maxDeliver: number;
  backoffMs: number;
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
 * event's handler runs in a transaction that also inserts (consumer, event id) into the inbox,
 * and a redelivered event whose row exists is acked without running again. A failing handler is
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

  async function handle(msg: JsMsg): Promise<void> {
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
    await context.with(trace.setSpan(parent, span), async () => {
      try {
        const handler = options.handlers[type];
        if (!id || !handler) {
          if (!id) {
            await deadLetter(msg, "the message has no ce-id header");
          } else {
            msg.ack(); // an event type this consumer does not handle
          }
          return;
        }
        let decoded: ReturnType<typeof decodeEvent>;
        try {
          decoded = decodeEvent(options.registry, type, msg.data);
        } catch (err) {
          await deadLetter(msg, err instanceof Error ? err.message : String(err));
          return;
        }
        const event: EventContext = {
          id,
          type,
          source: h?.get(EventHeaders.source) ?? "",
          time: new Date(h?.get(EventHeaders.time) || Date.now()),
          subject: msg.subject,
          deliveryCount: msg.info.deliveryCount,
        };
        try {
          const applied = await database.db.transaction(async (tx) => {
            const fresh = await tx
              .insert(inbox)
              .values({ consumer: options.durable, eventId: id })
              .onConflictDoNothing()
              .returning({ eventId: inbox.eventId });
            if (fresh.length === 0) return false;
            await handler(decoded.message, tx, event);
            return true;
          });
          msg.ack();
          if (applied) {
            processed.add(1, attrs);
            logger.debug({ event_id: id, type }, "event processed");
          } else {
            duplicates.add(1, attrs);
            span.setAttribute("meshwork.duplicate", true);
          }
        } catch (err) {
          failed.add(1, attrs);
          span.recordException(err as Error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
          if (msg.info.deliveryCount >= options.maxDeliver) {
            await deadLetter(msg, err instanceof Error ? err.message : String(err));
          } else {
            const delay = Math.min(30_000, options.backoffMs * 2 ** (msg.info.deliveryCount - 1));
            msg.nak(delay);
            logger.warn(
              {
                event_id: id,
                type,
                deliveries: msg.info.deliveryCount,
                retry_in_ms: delay,
                err: String(err),
              },
              "event handler failed; will retry",
            );
          }
        }
      } catch (err) {
        // Dead-lettering itself failed (NATS away): leave the message to be redelivered.
        logger.error({ err: String(err), event_id: id }, "event could not be settled");
      } finally {
        span.end();
      }
    });
  }

  return {
    async start() {
      const consumer = await js.consumers.get(options.stream, options.durable);
      messages = await consumer.consume({ max_messages: 256 });
      const iterator = messages;
      loop = (async () => {
        for await (const msg of iterator) await handle(msg);
      })().catch((err) => logger.error({ err: String(err) }, "event consumer stopped"));
    },
    async stop() {
      await messages?.close();
      await loop;
    },
  };
}

export { UndecodableEventError };
