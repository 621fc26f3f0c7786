import type { Logger } from "@meshwork/telemetry";
import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { EventConsumer } from "./consumer.js";
import { consumerOn } from "./streams.js";
import { type ConsumerSpec, provision, type StreamSpec } from "./topology.js";

/** How often a missing stream is looked for again. */
const RETRY_MS = 2_000;

/**
 * A consumer of another service's stream (legacy's syncs of ORDERS and INVENTORY, users' of
 * LEGACY_USERS): it never declares or updates that stream, whose owner sets its config
 * (`num_replicas` from its STREAM_REPLICAS, `max_age`); declaring it here would reset what the
 * owner chose on every start, and the consumer's NATS user has no right to. Only its own durable
 * consumer (filtered to `filterSubject`, by default the stream's first subject) and its own
 * dead-letter stream are provisioned.
 *
 * Until the owner has created the stream (the owning service not deployed yet, or starting
 * later), the consumer waits: it looks again every 2 s, with one warning, and starts once the
 * stream is there. The consuming service itself is not held up.
 */
export function consumeForeignStream(options: {
  nc: NatsConnection;
  stream: StreamSpec;
  durable: string;
  deadLetters: StreamSpec;
  logger: Logger;
  /** Builds the consumer once its durable exists. */
  consumer: () => EventConsumer;
  /** The one subject the durable reads (e.g. inventory's ProductChanged on LEGACY); default: the stream's first. */
  filterSubject?: string;
  /** The durable's ack wait, when it is not the server's default. */
  ackWaitMs?: number;
  /**
   * False: the durable exists already and is consumed as it is; neither it nor the dead-letter
   * stream is declared or updated. Default true.
   */
  declare?: boolean;
  retryMs?: number;
}): EventConsumer {
  const { nc, stream, durable, deadLetters, logger } = options;
  const spec: ConsumerSpec = {
    ...consumerOn(stream, durable, options.ackWaitMs === undefined ? {} : { ackWaitMs: options.ackWaitMs }),
    ...(options.filterSubject ? { filterSubject: options.filterSubject } : {}),
  };
  let stopped = false;
  let wake: (() => void) | undefined;
  let running: EventConsumer | undefined;
  let loop: Promise<void> | undefined;

  /** True once the consumer runs; false while the stream does not exist. */
  async function attempt(): Promise<boolean> {
    const jsm = await jetstreamManager(nc);
    try {
      await jsm.streams.info(stream.name);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.status === 404) return false;
      throw err;
    }
    if (options.declare !== false) await provision(jsm, { streams: [deadLetters], consumers: [spec] });
    running = options.consumer();
    await running.start();
    return true;
  }

  async function retry(): Promise<void> {
    logger.warn(
      { stream: stream.name, durable },
      "stream not found: its owning service creates it; this sync starts once it exists",
    );
    while (!stopped) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, options.retryMs ?? RETRY_MS).unref();
      });
      if (stopped) return;
      try {
        if (await attempt()) return;
      } catch (err) {
        logger.warn({ err, stream: stream.name, durable }, "starting the sync failed; trying again");
      }
    }
  }

  return {
    async start() {
      if (!(await attempt())) loop = retry();
    },
    async stop() {
      stopped = true;
      wake?.();
      await loop;
      await running?.stop();
    },
  };
}
