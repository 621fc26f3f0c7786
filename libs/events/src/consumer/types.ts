import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { AnyTransaction } from "@meshwork/db";
import type { Context } from "@opentelemetry/api";

/** What a handler receives besides the decoded message. */
export interface EventContext {
  id: string;
  type: string;
  source: string;
  time: Date;
  subject: string;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /**
   * When the broker stored the event (JetStream's timestamp): the time since then is how far
   * this consumer lags behind the stream.
   */
  publishTime: Date;
}

/** Applies one event inside the transaction that also records it in the inbox. */
export type EventHandler<Desc extends DescMessage = DescMessage> = (
  message: MessageShape<Desc>,
  tx: AnyTransaction,
  event: EventContext,
) => Promise<void>;

/** One event of a batch given to a {@link BatchEventHandler}. */
export interface BatchItem<Desc extends DescMessage = DescMessage> {
  message: MessageShape<Desc>;
  event: EventContext;
  /**
   * The event's own trace context (its CONSUMER span, child of the request that caused it).
   * The batch runs in the first event's context; run per-event work such as a log line in this
   * one (`context.with(item.traceContext, ...)`) to keep it in its own trace.
   */
  traceContext: Context;
}

/**
 * Applies several events of one type at once, inside the transaction that also records them in
 * the inbox: for effects that are one statement for many rows (a multi-row insert), which
 * saves a database round trip per event. Gets consecutive events of its type in stream order;
 * if it throws, the events are applied again one per call, each in a savepoint of its own, so
 * a failure stays with its event. It runs in the trace context of the first event.
 */
export interface BatchEventHandler<Desc extends DescMessage = DescMessage> {
  batch(items: BatchItem<Desc>[], tx: AnyTransaction): Promise<void>;
}
