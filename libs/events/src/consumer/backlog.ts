import type { Consumer, JetStreamClient } from "@nats-io/jetstream";
import type { Attributes, Meter, ObservableCallback, ObservableGauge } from "@opentelemetry/api";

/** What the broker says of a consumer's backlog, read at most once per `minIntervalMs`. */
interface Reading {
  at: number;
  pending?: number;
  ackPending?: number;
  deadLetters?: number;
}

export interface BacklogOptions {
  js: JetStreamClient;
  consumer: Consumer;
  durable: string;
  /** The subject dead letters go to: their stream's depth is the DLQ depth. */
  deadLetterSubject: string;
  meter: Meter;
  /** Readings younger than this are reused (several readers, frequent scrapes). Default 1000. */
  minIntervalMs?: number;
}

/**
 * The consumer's backlog as gauges read from the broker when metrics are collected:
 * `events.consumer.pending` (stored, not yet delivered: the lag in messages),
 * `events.consumer.ack_pending` (delivered, not yet acked) and `events.dlq.depth` (messages in
 * the dead-letter stream of its subject). A reading the broker does not answer (NATS away) is
 * left out rather than reported as 0. Returns the function that stops observing.
 */
export function observeBacklog(options: BacklogOptions): () => void {
  const { js, consumer, meter, durable } = options;
  const minIntervalMs = options.minIntervalMs ?? 1_000;
  const attrs: Attributes = { "messaging.consumer.group.name": durable };
  let dlqAttrs: Attributes | undefined;
  let last: Reading = { at: 0 };
  let reading: Promise<Reading> | undefined;

  async function read(): Promise<Reading> {
    const next: Reading = { at: Date.now() };
    try {
      const info = await consumer.info(false);
      next.pending = info.num_pending;
      next.ackPending = info.num_ack_pending;
    } catch {
      // Away: no reading.
    }
    try {
      const jsm = await js.jetstreamManager();
      const stream = await jsm.streams.find(options.deadLetterSubject);
      dlqAttrs ??= { "messaging.destination.name": stream, "messaging.consumer.group.name": durable };
      next.deadLetters = (await jsm.streams.info(stream)).state.messages;
    } catch {
      // No dead-letter stream (yet), or NATS away.
    }
    return next;
  }

  /** The latest reading, fresh enough; concurrent collections share one request. */
  function current(): Promise<Reading> {
    if (Date.now() - last.at < minIntervalMs) return Promise.resolve(last);
    reading ??= read().then((r) => {
      last = r;
      reading = undefined;
      return r;
    });
    return reading;
  }

  const gauges: Array<[ObservableGauge, ObservableCallback]> = [
    [
      meter.createObservableGauge("events.consumer.pending", {
        description: "Events stored on the stream and not yet delivered to the consumer (its lag, in events)",
      }),
      async (r) => {
        const v = (await current()).pending;
        if (v !== undefined) r.observe(v, attrs);
      },
    ],
    [
      meter.createObservableGauge("events.consumer.ack_pending", {
        description: "Events delivered to the consumer and not yet acknowledged",
      }),
      async (r) => {
        const v = (await current()).ackPending;
        if (v !== undefined) r.observe(v, attrs);
      },
    ],
    [
      meter.createObservableGauge("events.dlq.depth", {
        description: "Dead letters waiting in the consumer's dead-letter stream",
      }),
      async (r) => {
        const v = (await current()).deadLetters;
        if (v !== undefined && dlqAttrs) r.observe(v, dlqAttrs);
      },
    ],
  ];
  for (const [gauge, callback] of gauges) gauge.addCallback(callback);
  return () => {
    for (const [gauge, callback] of gauges) gauge.removeCallback(callback);
  };
}
