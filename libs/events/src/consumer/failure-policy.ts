import { exceptionForSpan, type Logger } from "@meshwork/telemetry";
import { context, SpanStatusCode } from "@opentelemetry/api";
import type { DeadLetterer } from "./dead-letter.js";
import type { Delivery } from "./delivery.js";
import type { ConsumerMetrics } from "./metrics.js";

/** What {@link createSettlement} needs. */
export interface SettlementOptions {
  /** Deliveries of a failing event before it is dead-lettered. */
  maxDeliver: number;
  /** First redelivery delay; doubles per delivery, capped at 30 s. */
  backoffMs: number;
  logger: Logger;
  metrics: ConsumerMetrics;
  deadLetter: DeadLetterer;
}

/**
 * Settles an applied batch on the broker and finishes each delivery: applied and duplicate
 * events are acked, a failed one is nak'ed with exponential backoff, or dead-lettered at its
 * `maxDeliver`-th delivery. Never rejects: what cannot be settled comes back after the ack wait.
 */
export type Settlement = (batch: Delivery[]) => Promise<void>;

/** Logs a message that could not be acked, nak'ed or dead-lettered (NATS away): it will be redelivered. */
export function reportUnsettled(logger: Logger, err: unknown, id: string): void {
  logger.error({ err: String(err), event_id: id }, "event could not be settled");
}

/** Creates the failure policy of a consumer, with its settlement of a batch. */
export function createSettlement(options: SettlementOptions): Settlement {
  const { logger, metrics } = options;
  const { attrs } = metrics;

  /** Acks, naks or dead-letters; returns a promise only when it has to wait (dead-lettering). */
  function settle(d: Delivery): Promise<void> | undefined {
    const { msg, span, event } = d;
    const state = d.state;
    if (state.kind === "applied" || state.kind === "duplicate") {
      msg.ack();
      if (state.kind === "applied") {
        metrics.processed.add(1, attrs);
        metrics.lag.record(Math.max(0, Date.now() - event.publishTime.getTime()) / 1000, attrs);
        logger.debug({ event_id: event.id, type: event.type }, "event processed");
      } else {
        metrics.duplicates.add(1, attrs);
        span.setAttribute("meshwork.duplicate", true);
      }
      return;
    }
    const err = state.kind === "failed" ? state.error : undefined;
    metrics.failed.add(1, attrs);
    // Scrubbed: a failed statement's error holds its parameters (an event's personal data).
    const exception = exceptionForSpan(err);
    span.recordException(exception);
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${exception.name}: ${exception.message}` });
    if (msg.info.deliveryCount >= options.maxDeliver) {
      return options.deadLetter(msg, err instanceof Error ? err.message : String(err));
    }
    const delay = Math.min(30_000, options.backoffMs * 2 ** (msg.info.deliveryCount - 1));
    msg.nak(delay);
    logger.warn(
      {
        event_id: event.id,
        type: event.type,
        deliveries: msg.info.deliveryCount,
        retry_in_ms: delay,
        err: String(err),
      },
      "event handler failed; will retry",
    );
  }

  return async (batch) => {
    // Settled back to back, with no await between the acks: nats.js writes what was queued in
    // one microtask, so the acks of a whole batch leave in one socket write, not one each.
    const waits: Promise<void>[] = [];
    for (const d of batch) {
      let wait: Promise<void> | undefined;
      try {
        wait = context.with(d.ctx, () => settle(d));
      } catch (err) {
        reportUnsettled(logger, err, d.event.id); // the connection closed under the ack: it will be redelivered
      }
      if (wait)
        waits.push(wait.catch((e) => reportUnsettled(logger, e, d.event.id)).finally(() => d.finish()));
      else d.finish();
    }
    await Promise.all(waits);
  };
}
