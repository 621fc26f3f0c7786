import type { Registry } from "@bufbuild/protobuf";
import type { DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { Meter, Tracer } from "@opentelemetry/api";
import { createAdmission } from "./consumer/admission.js";
import { createBatchApplier } from "./consumer/apply-batch.js";
import { observeBacklog } from "./consumer/backlog.js";
import { applyThroughOutages, DatabaseOutage } from "./consumer/database-outage.js";
import { createDeadLetterer } from "./consumer/dead-letter.js";
import { Delivery } from "./consumer/delivery.js";
import { createSettlement } from "./consumer/failure-policy.js";
import { DEFAULT_CONSUMER_LINGER_MS, MessageQueue, runFetchLoop } from "./consumer/fetch-loop.js";
import { createConsumerMetrics } from "./consumer/metrics.js";
import type { BatchEventHandler, EventHandler } from "./consumer/types.js";
import type { InboxTable } from "./inbox.js";

export { DeadLetterHeaders } from "./consumer/dead-letter.js";
export type { BatchEventHandler, BatchItem, EventContext, EventHandler } from "./consumer/types.js";

/** How {@link createEventConsumer} is wired to the broker, the database and the handlers. */
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
  /**
   * Deliveries of a failing event before it is dead-lettered. The durable consumer's server-side
   * `max_deliver` is set to one more at start, as a backstop.
   */
  maxDeliver: number;
  /** First redelivery delay of a failing event; doubles per delivery, capped at 30 s. */
  backoffMs: number;
  /** Most events applied in one transaction. Default 256. */
  maxBatch?: number;
  /**
   * How long a batch smaller than `maxBatch` may wait for more events before it is applied,
   * counted from its oldest event's arrival (`CONSUMER_LINGER_MS`; default
   * {@link DEFAULT_CONSUMER_LINGER_MS}; 0: apply whatever has arrived at once). Fewer, larger
   * transactions cost less CPU per event; an idle consumer's single event waits at most this long.
   */
  lingerMs?: number;
  /** Subject dead letters are published on, e.g. `dlq.notifications`. */
  deadLetterSubject: string;
  /** Rewrites a dead letter's data by event type before it is stored (blanks secrets). */
  redactDeadLetter?: (type: string, data: Uint8Array) => Uint8Array;
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

/**
 * Consumes a durable pull consumer with exactly-once effect on at-least-once delivery: each
 * event's handler runs in a transaction (a savepoint of a batch's transaction) that also inserts
 * (consumer, event id) into the inbox, and a redelivered event whose row exists is acked without
 * running again. Events that arrive together are applied in one transaction, one commit. A failing handler is
 * nak'ed with exponential backoff; at `maxDeliver` deliveries, or at once for a message that
 * cannot be decoded, the message goes to the dead-letter subject with the error and the delivery
 * count, and is terminated on its stream (a plain `term()`: it is not delivered again).
 *
 * An outage of the consumer's own database (connection refused or lost, the server shutting
 * down) is not the events' fault: the consumer pauses with the batch in hand, keeps its messages
 * alive on the broker, probes the database with backoff and applies the batch once it answers;
 * no delivery is nak'ed or dead-lettered for it (see `DatabaseOutage`).
 *
 * The steps live in `consumer/`: the fetch loop, admission (span, decoding), batch application
 * with its savepoint fallback, the failure policy with dead-lettering, and the backlog gauges
 * (pending, ack pending, dead-letter depth) read from the broker.
 */
export function createEventConsumer(options: EventConsumerOptions): EventConsumer {
  const { js, logger } = options;
  const metrics = createConsumerMetrics(options.meter, options.durable);
  const deadLetter = createDeadLetterer({
    js,
    durable: options.durable,
    subject: options.deadLetterSubject,
    logger,
    metrics,
    redact: options.redactDeadLetter,
  });
  const admit = createAdmission({ ...options, metrics, deadLetter });
  const apply = createBatchApplier(options);
  const settle = createSettlement({ ...options, metrics, deadLetter });

  const queue = createQueue(options);
  let inHand: Delivery[] = [];
  let outage: DatabaseOutage | undefined;
  let messages: ConsumerMessages | undefined;
  let loop: Promise<void> | undefined;
  let unobserve: (() => void) | undefined;

  /** Admits a fetched batch, applies it (riding out outages of the database) and settles it. */
  async function processBatch(batch: JsMsg[], paused: DatabaseOutage): Promise<void> {
    const admitted: Delivery[] = [];
    for (const msg of batch) {
      const d = admit(msg);
      if (d instanceof Delivery) admitted.push(d);
      else if (d) await d; // settled on the spot (dead-lettered)
    }
    if (admitted.length === 0) return;
    inHand = admitted;
    try {
      if (await applyThroughOutages(apply, admitted, paused)) await settle(admitted);
      else for (const d of admitted) d.finish(); // left unsettled: the broker redelivers them
    } finally {
      inHand = [];
    }
  }

  return {
    async start() {
      const consumer = await js.consumers.get(options.stream, options.durable);
      const ackWaitMs = await ensureDeliveryLimit(consumer, options);
      unobserve = observeBacklog({
        js,
        consumer,
        durable: options.durable,
        deadLetterSubject: options.deadLetterSubject,
        meter: options.meter,
      });
      outage = new DatabaseOutage({
        database: options.database,
        logger,
        metrics,
        keepAliveMs: Math.max(100, Math.floor(ackWaitMs / 3)),
        keepAlive() {
          for (const d of inHand) keepWorking(d.msg);
          queue.forEach(keepWorking);
        },
      });
      const paused = outage;
      messages = await consumer.consume({ max_messages: 256, callback: (msg) => queue.put(msg) });
      loop = runFetchLoop({
        queue,
        messages,
        maxBatch: options.maxBatch ?? 256,
        logger,
        process: (batch) => processBatch(batch, paused),
      });
    },
    async stop() {
      unobserve?.();
      outage?.stop();
      await messages?.close();
      await loop;
    },
  };
}

/** The queue of read messages: a batch short of `maxBatch` lingers up to `lingerMs` for more. */
function createQueue(options: EventConsumerOptions): MessageQueue {
  const lingerMs = options.lingerMs ?? DEFAULT_CONSUMER_LINGER_MS;
  return new MessageQueue({ lingerMs, minBatch: options.maxBatch ?? 256 });
}

/** Resets a held message's ack timer (`working()`), so the broker does not redeliver it yet. */
function keepWorking(msg: JsMsg): void {
  try {
    msg.working();
  } catch {
    // The connection is away: the message will be redelivered, as after a crash.
  }
}

/**
 * Sets the durable consumer's server-side delivery limit to one more than `maxDeliver` (the
 * delivery the consumer dead-letters at; the extra one gives a dead-lettering that failed, NATS
 * being away at that moment, one more chance). Returns the consumer's ack wait in ms.
 */
async function ensureDeliveryLimit(consumer: Consumer, options: EventConsumerOptions): Promise<number> {
  const info = await consumer.info(true);
  const limit = options.maxDeliver + 1;
  if (info.config.max_deliver !== limit) {
    const jsm = await options.js.jetstreamManager();
    await jsm.consumers.update(options.stream, options.durable, { max_deliver: limit });
  }
  return Math.round((info.config.ack_wait ?? 30_000_000_000) / 1_000_000);
}

export { UndecodableEventError } from "./envelope.js";
