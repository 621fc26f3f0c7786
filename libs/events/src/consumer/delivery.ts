import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { JsMsg } from "@nats-io/jetstream";
import type { Context, Span } from "@opentelemetry/api";
import type { BatchEventHandler, BatchItem, EventContext, EventHandler } from "./types.js";

/**
 * Where a delivery stands. `pending`: admitted, waiting for its batch to be applied; `applied`
 * or `duplicate`: its transaction committed (or its inbox row was already there), to be acked;
 * `failed`: its handler or its transaction failed, to be nak'ed or dead-lettered; `held`: its
 * batch met an outage of the consumer's database, to be applied again once it is back (not a
 * failure of the event); `finished`: settled (or given up on), its span ended.
 */
export type DeliveryState =
  | { kind: "pending" }
  | { kind: "applied" }
  | { kind: "duplicate" }
  | { kind: "failed"; error: unknown }
  | { kind: "held" }
  | { kind: "finished" };

// The states that carry nothing, made once: a batch moves every delivery through three of them.
const PENDING: DeliveryState = Object.freeze({ kind: "pending" });
const APPLIED: DeliveryState = Object.freeze({ kind: "applied" });
const DUPLICATE: DeliveryState = Object.freeze({ kind: "duplicate" });
const HELD: DeliveryState = Object.freeze({ kind: "held" });
const FINISHED: DeliveryState = Object.freeze({ kind: "finished" });

/**
 * One delivery of one event that passed admission: the message, its CONSUMER span and trace
 * context, the handler it goes to and the decoded event. It lives from admission through the
 * batch's transaction to its ack, nak or dead letter; its state changes only through the methods
 * below, and {@link Delivery.finish} is the one place it ends.
 */
export class Delivery {
  private s: DeliveryState = PENDING;

  constructor(
    readonly msg: JsMsg,
    readonly span: Span,
    readonly ctx: Context,
    readonly handler: EventHandler | BatchEventHandler,
    readonly message: MessageShape<DescMessage>,
    readonly event: EventContext,
  ) {}

  /** The current state. */
  get state(): DeliveryState {
    return this.s;
  }

  /** Its effect (and inbox row) committed. */
  applied(): void {
    this.setState(APPLIED);
  }

  /** Its inbox row already existed: applied before, to be acked with no effect. */
  duplicate(): void {
    this.setState(DUPLICATE);
  }

  /** Its handler or its transaction failed with `error`. */
  failed(error: unknown): void {
    this.setState({ kind: "failed", error });
  }

  /** Its batch met an outage of the database: it will be applied again, with no failure counted. */
  hold(): void {
    this.setState(HELD);
  }

  /** The error of a failed delivery; `undefined` in any other state. */
  get error(): unknown {
    return this.s.kind === "failed" ? this.s.error : undefined;
  }

  /** The event as a {@link BatchEventHandler} receives it. */
  batchItem(): BatchItem {
    return { message: this.message, event: this.event, traceContext: this.ctx };
  }

  /** Ends the delivery's span; later calls do nothing. */
  finish(): void {
    if (this.s.kind === "finished") return;
    this.setState(FINISHED);
    this.span.end();
  }

  private setState(next: DeliveryState): void {
    this.s = next;
  }
}
