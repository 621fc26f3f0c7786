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

/** What a batch's settlement counts, to record once for the batch. */
interface Tally {
  applied: number;
  duplicates: number;
  /** Whether the logger writes debug lines (then each applied event gets its line, in its trace). */
  debug: boolean;
}

/** Creates the failure policy of a consumer, with its settlement of a batch. */
export function createSettlement(options: SettlementOptions): Settlement {
  const { logger, metrics } = options;
  const { attrs } = metrics;

  /** Acks, naks or dead-letters a failed delivery; returns a promise only when it has to wait. */
  function settleFailed(d: Delivery): Promise<void> | undefined {
    const { msg, span, event } = d;
    const state = d.state;
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

  /**
   * Acks an applied or duplicate delivery and records it in the batch's tally. Runs outside the
   * event's trace context unless a debug line is written (the ack and the counters need none):
   * entering the context of every event was about 5% of the consumer's CPU in the events bench.
   */
  function settleDone(d: Delivery, tally: Tally, now: number): void {
    d.msg.ack();
    if (d.state.kind === "duplicate") {
      tally.duplicates++;
      d.span.setAttribute("meshwork.duplicate", true);
      return;
    }
    tally.applied++;
    metrics.lag.record(Math.max(0, now - d.event.publishTime.getTime()) / 1000, attrs);
    if (tally.debug) {
      const { event } = d;
      context.with(d.ctx, () => logger.debug({ event_id: event.id, type: event.type }, "event processed"));
    }
  }

  return async (batch) => {
    // Settled back to back, with no await between the acks: nats.js writes what was queued in
    // one microtask, so the acks of a whole batch leave in one socket write, not one each.
    const waits: Promise<void>[] = [];
    const tally: Tally = { applied: 0, duplicates: 0, debug: logger.isLevelEnabled("debug") };
    const now = Date.now();
    for (const d of batch) {
      let wait: Promise<void> | undefined;
      try {
        const kind = d.state.kind;
        if (kind === "applied" || kind === "duplicate") settleDone(d, tally, now);
        else wait = context.with(d.ctx, () => settleFailed(d));
      } catch (err) {
        reportUnsettled(logger, err, d.event.id); // the connection closed under the ack: it will be redelivered
      }
      if (wait)
        waits.push(wait.catch((e) => reportUnsettled(logger, e, d.event.id)).finally(() => d.finish()));
      else d.finish();
    }
    // Counted once per batch: a counter's add hashes its attributes on every call.
    if (tally.applied > 0) metrics.processed.add(tally.applied, attrs);
    if (tally.duplicates > 0) metrics.duplicates.add(tally.duplicates, attrs);
    await Promise.all(waits);
  };
}
