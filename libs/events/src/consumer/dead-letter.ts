import { type Logger, scrubText } from "@meshwork/telemetry";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { EventHeaders } from "../envelope.js";
import type { ConsumerMetrics } from "./metrics.js";

/** Headers added to a dead letter, beside the original CloudEvents headers. */
export const DeadLetterHeaders = {
  subject: "dlq-original-subject",
  stream: "dlq-stream",
  consumer: "dlq-consumer",
  deliveries: "dlq-deliveries",
  error: "dlq-error",
  time: "dlq-time",
} as const;

/** Moves a message to the dead-letter subject with `error`, then ends its delivery on its stream. */
export type DeadLetterer = (msg: JsMsg, error: string) => Promise<void>;

/** What {@link createDeadLetterer} needs. */
export interface DeadLettererOptions {
  js: JetStreamClient;
  durable: string;
  /** Subject dead letters are published on, e.g. `dlq.notifications`. */
  subject: string;
  logger: Logger;
  metrics: ConsumerMetrics;
  /**
   * Rewrites a dead letter's data before it is stored, by event type (`ce-type`): e.g. to blank a
   * secret field, so the dead-letter stream and whoever can read it never hold it.
   */
  redact?: (type: string, data: Uint8Array) => Uint8Array;
}

/**
 * Dead-letters a message: publishes its data and headers with the `dlq-*` headers (de-duplicated
 * per consumer and stream sequence, so a retried dead-lettering stores one letter), then
 * terminates it on its stream with a plain `term()`, which every supported server (2.9 and
 * 2.10+) honours: a dead-lettered event is not delivered again. Rejects if the publish fails: the message is then left unsettled
 * and comes back after the ack wait.
 */
export function createDeadLetterer(options: DeadLettererOptions): DeadLetterer {
  const { js, durable, logger, metrics } = options;
  return async (msg, error) => {
    const h = natsHeaders();
    for (const [k, v] of msg.headers ?? []) for (const x of v) h.append(k, x);
    h.set(DeadLetterHeaders.subject, msg.subject);
    h.set(DeadLetterHeaders.stream, msg.info.stream);
    h.set(DeadLetterHeaders.consumer, durable);
    h.set(DeadLetterHeaders.deliveries, String(msg.info.deliveryCount));
    // Scrubbed: a failed query's message carries its parameters (hashes, tokens).
    const reason = scrubText(error);
    h.set(DeadLetterHeaders.error, reason.slice(0, 1024).replace(/[\r\n]+/g, " "));
    h.set(DeadLetterHeaders.time, new Date().toISOString());
    const data = options.redact
      ? options.redact(msg.headers?.get(EventHeaders.type) ?? "", msg.data)
      : msg.data;
    await js.publish(options.subject, data, {
      headers: h,
      msgID: `dlq:${durable}:${msg.info.stream}:${msg.info.streamSequence}`,
    });
    // A plain term: nats-server 2.9 ignores the reason form (`+TERM reason`) and redelivers the
    // message after the ack wait (4 deliveries in 7 s with a 2 s ack wait); the reason travels
    // in the dead letter's `dlq-error` header instead.
    msg.term();
    metrics.deadLettered.add(1, metrics.attrs);
    logger.warn(
      {
        event_id: msg.headers?.get(EventHeaders.id),
        subject: msg.subject,
        deliveries: msg.info.deliveryCount,
        error: reason,
      },
      "event dead-lettered",
    );
  };
}
