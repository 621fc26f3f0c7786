import { DeliverPolicy, type JetStreamClient, type JsMsg, jetstream } from "@nats-io/jetstream";
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
  return new OrderedFeed(options);
}

/** The feed of {@link startInvalidationFeed}: a loop that (re-)attaches a consumer and applies its events. */
class OrderedFeed implements InvalidationFeed {
  readonly attached: Promise<void>;
  private appliedCount = 0;
  private running = true;
  private lastSeq = 0;
  private stopCurrent: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private markAttached: () => void = () => {};
  private readonly logger: Log;
  private readonly loop: Promise<void>;

  constructor(private readonly options: InvalidationFeedOptions) {
    this.logger = options.logger ?? { warn() {}, info() {} };
    this.attached = new Promise<void>((resolve) => {
      this.markAttached = resolve;
    });
    this.loop = this.run();
  }

  get applied(): number {
    return this.appliedCount;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stopCurrent?.();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const js = jetstream(this.options.nc);
    let failures = 0;
    while (this.running) {
      try {
        await this.follow(js);
        failures = 0;
      } catch (err) {
        if (failures++ === 0)
          this.logger.warn(
            { stream: this.options.stream, err: String(err) },
            "cache invalidation feed detached; re-attaching",
          );
      }
      if (this.running) await this.pause(this.options.retryMs ?? 500);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async follow(js: JetStreamClient): Promise<void> {
    const { options } = this;
    const consumer = await js.consumers.get(options.stream, {
      filter_subjects: options.filterSubject,
      ...(this.lastSeq > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.lastSeq + 1 }
        : { deliver_policy: DeliverPolicy.New }),
    });
    const messages = await consumer.consume();
    this.stopCurrent = () => void messages.stop();
    this.markAttached();
    for await (const m of messages) {
      await this.apply(m);
      this.lastSeq = m.seq;
      if (!this.running) break;
    }
  }

  /** Applies one event; a throw is logged and the event skipped. */
  private async apply(m: JsMsg): Promise<void> {
    try {
      await this.options.onEvent({
        subject: m.subject,
        type: m.headers?.get("ce-type") || m.subject,
        data: m.data,
        seq: m.seq,
      });
      this.appliedCount++;
    } catch (err) {
      this.logger.warn(
        { stream: this.options.stream, seq: m.seq, err: String(err) },
        "cache invalidation event skipped",
      );
    }
  }
}
