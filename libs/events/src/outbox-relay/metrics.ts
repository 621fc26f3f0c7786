import type { Counter, Meter } from "@opentelemetry/api";

/** The relay's counters, and the backlog it reports as gauges (updated in place by the relay). */
export interface RelayMetrics {
  published: Counter;
  failures: Counter;
  backlog: { count: number; oldestAgeSeconds: number };
}

export function createRelayMetrics(meter: Meter): RelayMetrics {
  const backlog = { count: 0, oldestAgeSeconds: 0 };
  meter.createObservableGauge("outbox.backlog", { description: "Unsent outbox rows" }).addCallback((r) => {
    r.observe(backlog.count);
  });
  meter
    .createObservableGauge("outbox.oldest_age", {
      description: "Age of the oldest unsent outbox row",
      unit: "s",
    })
    .addCallback((r) => r.observe(backlog.oldestAgeSeconds));
  return {
    published: meter.createCounter("outbox.published", { description: "Events published by the relay" }),
    failures: meter.createCounter("outbox.publish_failures", { description: "Relay batches that failed" }),
    backlog,
  };
}
