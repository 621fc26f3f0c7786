import type { JetStreamClient } from "@nats-io/jetstream";
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";

/** The broker's answer to one publish: the stream and sequence it was stored at. */
export interface PublishAck {
  stream: string;
  seq: number;
  /** The stream already held a message with this `Nats-Msg-Id` (within its duplicate window). */
  duplicate: boolean;
}

/** One message of a batch. */
export interface OutgoingMessage {
  subject: string;
  payload: Uint8Array;
  /** Must carry `Nats-Msg-Id`. */
  headers: MsgHdrs;
}

/** A publish the broker did not acknowledge: no ack within the batch's time, or an error answer. */
export class PublishNotAckedError extends Error {
  override readonly name = "PublishNotAckedError";
}

type Outcome = PublishAck | Error;

/**
 * JetStream publishing with the acks of a batch pipelined on one reply subscription.
 *
 * `js.publish` makes every message a request of its own: a reply-mux entry, a timer, a deferred,
 * and in nats.js 3.4 (even with `noAsyncTraces`) a "cancelled" `RequestError` built, stack trace
 * and all, after every successful reply. Here a batch's messages leave back to back with reply
 * subjects `<inbox>.<n>`, their acks arrive on one subscription (`<inbox>.*`), and one timer
 * bounds the whole batch.
 */
export class AckPipeline {
  readonly #nc: NatsConnection;
  #inbox: string | undefined;
  #sub: Subscription | undefined;
  readonly #waiting = new Map<string, (outcome: Outcome) => void>();
  #next = 0;

  constructor(nc: NatsConnection) {
    this.#nc = nc;
  }

  /** The connection a JetStream client publishes through. */
  static of(js: JetStreamClient): AckPipeline {
    const nc = (js as unknown as { nc?: NatsConnection }).nc;
    if (!nc) throw new Error("the JetStream client does not expose its NATS connection");
    return new AckPipeline(nc);
  }

  /**
   * Publishes every message and resolves, once each has an answer or `timeoutMs` has passed,
   * with the ack or the error of each, in order. Never rejects.
   */
  publishAll(messages: readonly OutgoingMessage[], timeoutMs: number): Promise<Outcome[]> {
    const outcomes: (Outcome | undefined)[] = new Array(messages.length);
    if (messages.length === 0) return Promise.resolve([]);
    const inbox = this.#subscribed();
    const keys: string[] = [];
    return new Promise<Outcome[]>((resolve) => {
      let open = messages.length;
      const finish = () => {
        clearTimeout(timer);
        for (const k of keys) this.#waiting.delete(k);
        resolve(outcomes as Outcome[]);
      };
      const settle = (i: number, outcome: Outcome) => {
        if (outcomes[i] !== undefined) return;
        outcomes[i] = outcome;
        if (--open === 0) finish();
      };
      const timer = setTimeout(() => {
        const late = new PublishNotAckedError(`no ack from JetStream within ${timeoutMs} ms`);
        for (let i = 0; i < outcomes.length; i++) if (outcomes[i] === undefined) outcomes[i] = late;
        finish();
      }, timeoutMs);
      messages.forEach((m, i) => {
        const reply = `${inbox}.${this.#next++}`;
        keys.push(reply);
        this.#waiting.set(reply, (outcome) => settle(i, outcome));
        try {
          this.#nc.publish(m.subject, m.payload, { headers: m.headers, reply });
        } catch (err) {
          settle(i, err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  }

  /** Stops listening for acks (a batch in flight then ends at its timeout). */
  close(): void {
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    this.#inbox = undefined;
  }

  #subscribed(): string {
    if (this.#inbox && this.#sub && !this.#sub.isClosed()) return this.#inbox;
    // The connection's own inbox prefix: a NATS user of its own may subscribe only under it.
    const prefix = (this.#nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    const inbox = createInbox(prefix);
    this.#sub = this.#nc.subscribe(`${inbox}.*`, {
      callback: (err, msg) => {
        if (err) return; // the subscription ends (connection closed): batches end at their timeout
        this.#waiting.get(msg.subject)?.(readAck(msg));
      },
    });
    this.#inbox = inbox;
    return inbox;
  }
}

/** The broker's answer to a publish: a PubAck, an API error, or a status (503: no stream). */
function readAck(msg: Msg): Outcome {
  if (msg.headers?.hasError) {
    const code = msg.headers.code;
    return new PublishNotAckedError(
      code === 503
        ? `no stream takes subject (no responders, 503)`
        : `JetStream answered ${code} ${msg.headers.description}`,
    );
  }
  const fast = readPubAck(msg.data);
  if (fast) return fast;
  try {
    const body = msg.json<{
      stream?: string;
      seq?: number;
      duplicate?: boolean;
      error?: { code?: number; description?: string };
    }>();
    if (body.error)
      return new PublishNotAckedError(
        `JetStream refused the message: ${body.error.description} (${body.error.code})`,
      );
    if (!body.stream) return new PublishNotAckedError("invalid ack from JetStream (no stream)");
    return { stream: body.stream, seq: body.seq ?? 0, duplicate: body.duplicate === true };
  } catch (err) {
    return new PublishNotAckedError(`unreadable ack from JetStream: ${String(err)}`);
  }
}

const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
const STREAM_OPEN = ascii('{"stream":"');
const SEQ_KEY = ascii(',"seq":');
const DUPLICATE_TRUE = ascii(',"duplicate":true}');
/** The last stream name read, as bytes and as a string: every ack of a relay names the same stream. */
let lastStream = { bytes: new Uint8Array(0), name: "" };

/**
 * A PubAck in the shape the broker writes it, `{"stream":"<name>","seq":<n>}` with an optional
 * `,"duplicate":true`, read from its bytes; `undefined` for anything else (a domain, an error, a
 * name with other than printable ASCII, another order), which the caller reads as JSON. Decoding
 * and `JSON.parse` of every ack were 4.6% of the relay's CPU in the events bench (main e517c13)
 * on a loaded machine; alone, 10^6 reads of one ack: 0.38-0.49 us each as JSON, 0.12-0.17 here.
 */
export function readPubAck(data: Uint8Array): PublishAck | undefined {
  if (!startsWith(data, 0, STREAM_OPEN)) return undefined;
  const nameStart = STREAM_OPEN.length;
  let i = nameStart;
  for (; i < data.length && data[i] !== 0x22; i++) {
    const c = data[i] as number;
    if (c < 0x20 || c > 0x7e || c === 0x5c) return undefined; // control, non-ASCII or an escape
  }
  if (i === nameStart || i === data.length) return undefined;
  const stream = streamName(data, nameStart, i);
  i++;
  if (!startsWith(data, i, SEQ_KEY)) return undefined;
  i += SEQ_KEY.length;
  const digitsStart = i;
  let seq = 0;
  for (; i < data.length && (data[i] as number) >= 0x30 && (data[i] as number) <= 0x39; i++)
    seq = seq * 10 + ((data[i] as number) - 0x30);
  if (i === digitsStart || i - digitsStart > 15) return undefined;
  if (i === data.length - 1 && data[i] === 0x7d) return { stream, seq, duplicate: false };
  if (i + DUPLICATE_TRUE.length === data.length && startsWith(data, i, DUPLICATE_TRUE))
    return { stream, seq, duplicate: true };
  return undefined;
}

function startsWith(data: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (data.length - at < prefix.length) return false;
  for (let j = 0; j < prefix.length; j++) if (data[at + j] !== prefix[j]) return false;
  return true;
}

/** The name between `start` and `end` (printable ASCII), the last one's string when the bytes repeat. */
function streamName(data: Uint8Array, start: number, end: number): string {
  const { bytes } = lastStream;
  if (bytes.length === end - start && startsWith(data, start, bytes)) return lastStream.name;
  const copy = data.slice(start, end);
  lastStream = { bytes: copy, name: String.fromCharCode(...copy) };
  return lastStream.name;
}
