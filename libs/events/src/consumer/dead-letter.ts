import { type Logger, scrubText } from "@meshwork/telemetry";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import { EventHeaders } from "../envelope.js";
import { type HeaderValues, headerValues } from "./admission.js";
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
    const original = copyHeaders(msg, h);
    h.set(DeadLetterHeaders.subject, msg.subject);
    h.set(DeadLetterHeaders.stream, msg.info.stream);
    h.set(DeadLetterHeaders.consumer, durable);
    h.set(DeadLetterHeaders.deliveries, String(msg.info.deliveryCount));
    // Scrubbed: a failed query's message carries its parameters (hashes, tokens).
    const reason = scrubText(error);
    h.set(DeadLetterHeaders.error, reason.slice(0, 1024).replace(/[\r\n]+/g, " "));
    h.set(DeadLetterHeaders.time, new Date().toISOString());
    const data = options.redact ? options.redact(original[EventHeaders.type] ?? "", msg.data) : msg.data;
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
        event_id: original[EventHeaders.id],
        subject: msg.subject,
        deliveries: msg.info.deliveryCount,
        error: reason,
      },
      "event dead-lettered",
    );
  };
}

/**
 * Copies a message's headers onto its dead letter and returns their first values. A header block
 * nats.js refuses to decode (a name with a space or a non-ASCII character, a value with a bare
 * CR or LF: nats-server stores such blocks as sent) would make `msg.headers` throw and leave the
 * message unsettled with no dead letter, so the block is then read as admission reads it, and a
 * name or value NATS refuses to send again is left out of the letter.
 */
export function copyHeaders(msg: JsMsg, to: MsgHdrs): HeaderValues {
  let decoded: MsgHdrs | undefined;
  try {
    decoded = msg.headers;
  } catch {
    decoded = undefined;
  }
  const entries: Iterable<[string, string[]]> = decoded
    ? decoded
    : Object.entries(headerValues(msg)).map(([k, v]): [string, string[]] => [k, [v ?? ""]]);
  const first: HeaderValues = Object.create(null);
  for (const [k, vs] of entries) {
    first[k] ??= vs[0];
    for (const v of vs) {
      try {
        to.append(k, v);
      } catch {
        // Not sendable (see above): the letter goes without it.
      }
    }
  }
  return first;
}
