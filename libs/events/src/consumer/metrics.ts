import type { Attributes, Counter, Histogram, Meter, UpDownCounter } from "@opentelemetry/api";

/** The consumer's instruments, and the attributes every one of them is recorded with. */
export interface ConsumerMetrics {
  attrs: Attributes;
  processed: Counter;
  duplicates: Counter;
  failed: Counter;
  redelivered: Counter;
  deadLettered: Counter;
  lag: Histogram;
  databaseOutages: Counter;
  paused: UpDownCounter;
}

/** Creates the instruments of the consumer `durable` (one set per consumer, same names for all). */
export function createConsumerMetrics(meter: Meter, durable: string): ConsumerMetrics {
  return {
    attrs: { "messaging.consumer.group.name": durable },
    processed: meter.createCounter("events.consumer.processed", { description: "Events applied" }),
    duplicates: meter.createCounter("events.consumer.duplicates", {
      description: "Redelivered events found in the inbox and acked with no effect",
    }),
    failed: meter.createCounter("events.consumer.failed", { description: "Handler failures (nak'ed)" }),
    redelivered: meter.createCounter("events.consumer.redelivered", {
      description: "Deliveries after the first",
    }),
    deadLettered: meter.createCounter("events.consumer.dead_lettered", {
      description: "Events moved to the dead-letter stream",
    }),
    databaseOutages: meter.createCounter("events.consumer.database_outages", {
      description: "Pauses because the consumer's own database was unreachable (no event failed for them)",
    }),
    paused: meter.createUpDownCounter("events.consumer.paused", {
      description: "1 while the consumer waits for its database to come back",
    }),
    lag: meter.createHistogram("events.consumer.lag", {
      description: "Time from the broker storing an event to its effect being committed",
      unit: "s",
      advice: {
        explicitBucketBoundaries: [
          0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
        ],
      },
    }),
  };
}
