import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { DeadLetterHeaders } from "./consumer.js";
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

/** Lists the messages of a dead-letter stream, oldest first. */
export async function listDeadLetters(
  jsm: JetStreamManager,
  stream: string,
  limit = 1_000,
): Promise<DeadLetter[]> {
  const info = await jsm.streams.info(stream);
  const out: DeadLetter[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < limit; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!m) continue; // deleted (replayed)
    const h = m.header;
    out.push({
      seq,
      eventId: h.get(EventHeaders.id),
      type: h.get(EventHeaders.type),
      originalSubject: h.get(DeadLetterHeaders.subject),
      consumer: h.get(DeadLetterHeaders.consumer),
      deliveries: Number(h.get(DeadLetterHeaders.deliveries) || 0),
      error: h.get(DeadLetterHeaders.error),
      time: h.get(DeadLetterHeaders.time),
    });
  }
  return out;
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
  const subject = m.header.get(DeadLetterHeaders.subject);
  if (!subject) throw new Error(`dead letter ${seq} has no original subject`);
  const [letter] = (await listDeadLetters(jsm, stream)).filter((l) => l.seq === seq);
  const h = natsHeaders();
  for (const [k, v] of m.header) if (!deadLetterKeys.has(k.toLowerCase())) for (const x of v) h.append(k, x);
  await js.publish(subject, m.data, {
    headers: h,
    msgID: `${m.header.get(EventHeaders.id)}:replay:${stream}:${seq}`,
  });
  await jsm.streams.deleteMessage(stream, seq);
  if (!letter) throw new Error(`dead letter ${seq} vanished`);
  return letter;
}
