import type { Registry } from "@bufbuild/protobuf";
import type { DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { ConsumerMessages, JetStreamClient } from "@nats-io/jetstream";
import type { Meter, Tracer } from "@opentelemetry/api";
import { createAdmission } from "./consumer/admission.js";
import { createBatchApplier } from "./consumer/apply-batch.js";
import { createDeadLetterer } from "./consumer/dead-letter.js";
import type { Delivery } from "./consumer/delivery.js";
import { createSettlement } from "./consumer/failure-policy.js";
import { runFetchLoop } from "./consumer/fetch-loop.js";
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
  /** Deliveries of a failing event before it is dead-lettered. */
  maxDeliver: number;
  /** First redelivery delay of a failing event; doubles per delivery, capped at 30 s. */
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

/**
 * Consumes a durable pull consumer with exactly-once effect on at-least-once delivery: each
 * event's handler runs in a transaction (a savepoint of a batch's transaction) that also inserts
 * (consumer, event id) into the inbox, and a redelivered event whose row exists is acked without
 * running again. Events that arrive together are applied in one transaction, one commit. A failing handler is
 * nak'ed with exponential backoff; at `maxDeliver` deliveries, or at once for a message that
 * cannot be decoded, the message goes to the dead-letter subject with the error and the delivery
 * count, and is terminated on its stream.
 *
 * The steps live in `consumer/`: the fetch loop, admission (span, decoding), batch application
 * with its savepoint fallback, and the failure policy with dead-lettering.
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
  });
  const admit = createAdmission({ ...options, metrics, deadLetter });
  const apply = createBatchApplier(options);
  const settle = createSettlement({ ...options, metrics, deadLetter });

  let messages: ConsumerMessages | undefined;
  let loop: Promise<void> | undefined;
  return {
    async start() {
      const consumer = await js.consumers.get(options.stream, options.durable);
      messages = await consumer.consume({ max_messages: 256 });
      loop = runFetchLoop({
        messages,
        maxBatch: options.maxBatch ?? 256,
        logger,
        async process(batch) {
          const admitted: Delivery[] = [];
          for (const msg of batch) {
            const d = await admit(msg);
            if (d) admitted.push(d);
          }
          if (admitted.length === 0) return;
          await apply(admitted);
          await settle(admitted);
        },
      });
    },
    async stop() {
      await messages?.close();
      await loop;
    },
  };
}

export { UndecodableEventError } from "./envelope.js";
