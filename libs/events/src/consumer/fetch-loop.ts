import type { Logger } from "@meshwork/telemetry";
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";

/**
 * The messages read from the broker and not yet taken: the reader puts, the applier takes
 * everything queued at once, so under load a batch carries many events and when idle each goes
 * through at once.
 */
export class MessageQueue {
  private readonly items: JsMsg[] = [];
  private wake: (() => void) | undefined;
  private open = true;

  /** Queues a message read from the broker. */
  put(msg: JsMsg): void {
    this.items.push(msg);
    this.wake?.();
  }

  /** Calls `fn` on every queued message (to keep them alive on the broker while paused). */
  forEach(fn: (msg: JsMsg) => void): void {
    for (const m of this.items) fn(m);
  }

  /** No more messages will be put; the applier drains what is queued and stops. */
  close(): void {
    this.open = false;
    this.wake?.();
  }

  /** Up to `max` queued messages, waiting for one if none is; `undefined` once closed and drained. */
  async take(max: number): Promise<JsMsg[] | undefined> {
    while (this.items.length === 0) {
      if (!this.open) return undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
    return this.items.splice(0, max);
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
