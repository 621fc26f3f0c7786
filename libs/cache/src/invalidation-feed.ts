import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

type Log = { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };

/** One event of the owner's stream, as the feed hands it over. */
export interface FeedEvent {
  subject: string;
  /** The CloudEvents type (`ce-type` header), or the subject when absent. */
  type: string;
  data: Uint8Array;
  /** The stream sequence. */
  seq: number;
}

export interface InvalidationFeedOptions {
  nc: NatsConnection;
  /** The owning service's event stream (e.g. INVENTORY). */
  stream: string;
  /** The subjects to follow in it (one filter, wildcards allowed: NATS 2.9 takes one). */
  filterSubject: string;
  /** Applies one event (decode it, invalidate the keys it names). A throw is logged and skipped. */
  onEvent(event: FeedEvent): Promise<void> | void;
  logger?: Log;
  /** Pause before re-attaching after the feed broke, ms. Default 500. */
  retryMs?: number;
}

/** A running feed. */
export interface InvalidationFeed {
  /** Resolves once the feed is attached to the stream (tests wait for it before changing data). */
  readonly attached: Promise<void>;
  /** Events applied so far. */
  readonly applied: number;
  stop(): Promise<void>;
}

/**
 * Fans an owner's events out to this process: an ordered (ephemeral, unacknowledged) JetStream
 * consumer of its own, so every instance of every service that caches the owner's data gets every
 * event, with no polling and no durable state. It starts at new events, follows the stream in
 * order, re-creates its consumer after a gap or a broker restart, and resumes after the last event
 * it applied, so an outage delays invalidations but loses none the stream still holds.
 */
export function startInvalidationFeed(options: InvalidationFeedOptions): InvalidationFeed {
  const logger: Log = options.logger ?? { warn() {}, info() {} };
  const js = jetstream(options.nc);
  let running = true;
  let lastSeq = 0;
  let applied = 0;
  let stopCurrent: (() => void) | undefined;
  let wake: (() => void) | undefined;
  let markAttached: () => void = () => {};
  const attached = new Promise<void>((resolve) => {
    markAttached = resolve;
  });

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  async function follow(): Promise<void> {
    const consumer = await js.consumers.get(options.stream, {
      filter_subjects: options.filterSubject,
      ...(lastSeq > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 }
        : { deliver_policy: DeliverPolicy.New }),
    });
    const messages = await consumer.consume();
    stopCurrent = () => void messages.stop();
    markAttached();
    for await (const m of messages) {
      try {
        await options.onEvent({
          subject: m.subject,
          type: m.headers?.get("ce-type") || m.subject,
          data: m.data,
          seq: m.seq,
        });
        applied++;
      } catch (err) {
        logger.warn(
          { stream: options.stream, seq: m.seq, err: String(err) },
          "cache invalidation event skipped",
        );
      }
      lastSeq = m.seq;
      if (!running) break;
    }
  }

  const loop = (async () => {
    let failures = 0;
    while (running) {
      try {
        await follow();
        failures = 0;
      } catch (err) {
        if (failures++ === 0)
          logger.warn(
            { stream: options.stream, err: String(err) },
            "cache invalidation feed detached; re-attaching",
          );
      }
      if (running) await pause(options.retryMs ?? 500);
    }
  })();

  return {
    attached,
    get applied() {
      return applied;
    },
    async stop() {
      running = false;
      stopCurrent?.();
      wake?.();
      await loop;
    },
  };
}
