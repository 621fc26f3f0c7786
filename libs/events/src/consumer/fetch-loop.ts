import type { Logger } from "@meshwork/telemetry";
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";

/**
 * Default of a consumer's linger (`CONSUMER_LINGER_MS`), against a lag goal of 50 ms p99. It
 * counts from the oldest event's arrival, so it only adds to what a commit already waited: 2 ms,
 * shorter than a loaded machine's commit cycle, changed nothing measurable
 * (`events-linger-trickle.mjs` at 1000/s: 19.6 events a transaction against 26.8 without);
 * 5 ms gave 50.
 */
export const DEFAULT_CONSUMER_LINGER_MS = 5;

/** How long {@link MessageQueue.take} may hold a small batch for more messages to arrive. */
export interface LingerOptions {
  /**
   * Longest time a message waits in the queue for company, counted from its arrival (not from
   * the `take`): a message that already waited out an applier's commit goes at once. 0: off,
   * `take` returns whatever is queued.
   */
  lingerMs: number;
  /** Queued messages at which `take` stops lingering and returns at once. */
  minBatch: number;
}

/**
 * The messages read from the broker and not yet taken: the reader puts, the applier takes
 * everything queued at once (up to a maximum).
 *
 * With a linger, a `take` that finds fewer than `minBatch` messages waits until that many are
 * queued, the queue is closed, or `lingerMs` has passed since the oldest queued message arrived,
 * whichever comes first. A consumer that keeps pace with its producer otherwise takes only what
 * arrived during its last commit and pays a transaction's fixed cost (~0.6 ms of JS and ~0.4 ms
 * of Postgres backend, `events-batch-cost.mjs`) for a handful of events; that CPU slows the
 * producer on the same cores, which keeps the batches small.
 */
export class MessageQueue {
  private readonly items: JsMsg[] = [];
  /**
   * When each queued message arrived (`performance.now()`), in step with `items`; kept only with a
   * linger. Per message, so the messages a take leaves behind keep their own arrival times.
   */
  private readonly arrivals: number[] = [];
  private wake: (() => void) | undefined;
  private open = true;
  private readonly linger: LingerOptions;

  constructor(linger: LingerOptions = { lingerMs: 0, minBatch: 1 }) {
    this.linger = linger;
  }

  /** Queues a message read from the broker. */
  put(msg: JsMsg): void {
    if (this.linger.lingerMs > 0) this.arrivals.push(performance.now());
    this.items.push(msg);
    this.wake?.();
  }

  /** Calls `fn` on every queued message (to keep them alive on the broker while paused). */
  forEach(fn: (msg: JsMsg) => void): void {
    for (const m of this.items) fn(m);
  }

  /** No more messages will be put; the applier drains what is queued (without lingering) and stops. */
  close(): void {
    this.open = false;
    this.wake?.();
  }

  /**
   * Up to `max` queued messages, waiting for one if none is and lingering for more if few are;
   * `undefined` once closed and drained.
   */
  async take(max: number): Promise<JsMsg[] | undefined> {
    while (this.items.length === 0) {
      if (!this.open) return undefined;
      await this.nextPut(() => true);
    }
    const enough = Math.min(max, this.linger.minBatch);
    if (this.linger.lingerMs > 0 && this.open && this.items.length < enough) await this.lingerFor(enough);
    if (this.linger.lingerMs > 0) this.arrivals.splice(0, max);
    return this.items.splice(0, max);
  }

  /** Waits until `enough` messages are queued, the queue closes, or the oldest one's linger ends. */
  private async lingerFor(enough: number): Promise<void> {
    const left = (this.arrivals[0] ?? 0) + this.linger.lingerMs - performance.now();
    if (left <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, left);
    });
    const filled = this.nextPut(() => this.items.length >= enough);
    await Promise.race([expired, filled]);
    clearTimeout(timer);
    this.wake = undefined;
  }

  /** Resolves at the first put (or close) after which `done()` holds, or the queue is closed. */
  private nextPut(done: () => boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = () => {
        if (!this.open || done()) {
          this.wake = undefined;
          resolve();
        }
      };
    });
  }
}

/** What {@link runFetchLoop} needs. */
export interface FetchLoopOptions {
  /** Where read messages wait; the caller may look into it (see {@link MessageQueue.forEach}). */
  queue: MessageQueue;
  /**
   * The consumer's messages (`consume()` with a callback that puts each message in `queue`);
   * closing them ends the loop.
   */
  messages: ConsumerMessages;
  /** Most messages handed to `process` at once. */
  maxBatch: number;
  logger: Logger;
  /** Admits, applies and settles one batch; the next batch waits for it. */
  process(batch: JsMsg[]): Promise<void>;
}

/**
 * Hands what the queue holds to `process`, one batch at a time. Resolves once the consumer's
 * messages have ended (closed, or failed: logged) and every queued message has been processed.
 *
 * The messages come in through `consume()`'s callback rather than its async iterator: the
 * iterator costs a promise and a generator step per message, and the queue takes every message
 * at once anyway.
 */
export async function runFetchLoop(options: FetchLoopOptions): Promise<void> {
  const { queue } = options;
  const reader = options.messages
    .closed()
    .then((err) => {
      if (err) options.logger.error({ err: String(err) }, "event consumer stopped");
    })
    .finally(() => queue.close());
  const applier = (async () => {
    for (let batch = await queue.take(options.maxBatch); batch; batch = await queue.take(options.maxBatch)) {
      await options.process(batch);
    }
  })();
  await Promise.all([reader, applier]);
}
