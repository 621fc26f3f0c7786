import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { DeadLetterHeaders } from "./consumer/dead-letter.js";
import { EventHeaders } from "./envelope.js";

/** A dead letter as `meshctl events dlq list` shows it. */
export interface DeadLetter {
  /** Its sequence in the dead-letter stream: what `replay` takes. */
  seq: number;
  eventId: string;
  type: string;
  originalSubject: string;
  consumer: string;
  deliveries: number;
  error: string;
  time: string;
}

const deadLetterKeys = new Set<string>(Object.values(DeadLetterHeaders));

/**
 * Lists the messages of a dead-letter stream, oldest first: at most `limit`, of the durable
 * `consumer` only when it is given (filtered before the limit counts).
 */
export async function listDeadLetters(
  jsm: JetStreamManager,
  stream: string,
  limit = 1_000,
  consumer?: string,
): Promise<DeadLetter[]> {
  const info = await jsm.streams.info(stream);
  const out: DeadLetter[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < limit; seq++) {
    const letter = await getDeadLetter(jsm, stream, seq);
    // Missing: deleted (replayed).
    if (letter && (consumer === undefined || letter.consumer === consumer)) out.push(letter);
  }
  return out;
}

/** The dead letter at `seq` of `stream`, or `undefined` when there is none (replayed, purged). */
export async function getDeadLetter(
  jsm: JetStreamManager,
  stream: string,
  seq: number,
): Promise<DeadLetter | undefined> {
  const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
  return m ? toDeadLetter(seq, m.header) : undefined;
}

function toDeadLetter(seq: number, h: { get(key: string): string }): DeadLetter {
  return {
    seq,
    eventId: h.get(EventHeaders.id),
    type: h.get(EventHeaders.type),
    originalSubject: h.get(DeadLetterHeaders.subject),
    consumer: h.get(DeadLetterHeaders.consumer),
    deliveries: Number(h.get(DeadLetterHeaders.deliveries) || 0),
    error: h.get(DeadLetterHeaders.error),
    time: h.get(DeadLetterHeaders.time),
  };
}

/**
 * Publishes a dead letter again on its original subject with its original headers (same event
 * id, so consumers that did apply it skip it through their inboxes), then removes it from the
 * dead-letter stream.
 */
export async function replayDeadLetter(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  seq: number,
): Promise<DeadLetter> {
  const m = await jsm.streams.getMessage(stream, { seq });
  if (!m) throw new Error(`no dead letter ${seq} in ${stream}`);
  const letter = toDeadLetter(seq, m.header);
  if (!letter.originalSubject) throw new Error(`dead letter ${seq} has no original subject`);
  const h = natsHeaders();
  for (const [k, v] of m.header) if (!deadLetterKeys.has(k.toLowerCase())) for (const x of v) h.append(k, x);
  await js.publish(letter.originalSubject, m.data, {
    headers: h,
    msgID: `${m.header.get(EventHeaders.id)}:replay:${stream}:${seq}`,
  });
  await jsm.streams.deleteMessage(stream, seq);
  return letter;
}
