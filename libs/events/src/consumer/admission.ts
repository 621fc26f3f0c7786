import type { Registry } from "@bufbuild/protobuf";
import type { Logger } from "@meshwork/telemetry";
import type { JsMsg } from "@nats-io/jetstream";
import {
  type Context,
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type TextMapGetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { decodeEvent, EventHeaders, UndecodableEventError } from "../envelope.js";
import type { DeadLetterer } from "./dead-letter.js";
import { Delivery } from "./delivery.js";
import { reportUnsettled } from "./failure-policy.js";
import type { ConsumerMetrics } from "./metrics.js";
import type { BatchEventHandler, EventContext, EventHandler } from "./types.js";

/** What {@link createAdmission} needs. */
export interface AdmissionOptions {
  durable: string;
  handlers: Record<string, EventHandler | BatchEventHandler>;
  registry: Registry;
  tracer: Tracer;
  logger: Logger;
  metrics: ConsumerMetrics;
  deadLetter: DeadLetterer;
}

/**
 * Opens a message's CONSUMER span and settles what needs no handler: a message with no event id
 * and one that cannot be decoded are dead-lettered, a type with no handler is acked and skipped.
 * Returns a {@link Delivery} for the rest; `undefined` when the message is already settled, or a
 * promise when settling it has to wait (dead-lettering). Synchronous on the common path: an
 * async step per message cost a promise each (and an async-hooks init under the context manager).
 */
export type Admission = (msg: JsMsg) => Delivery | Promise<void> | undefined;

const natsGetter: TextMapGetter<JsMsg["headers"]> = {
  get: (carrier, key) => carrier?.get(key) || undefined,
  keys: (carrier) => (carrier ? [...carrier.keys()] : []),
};

/** Creates the admission step of a consumer. */
export function createAdmission(options: AdmissionOptions): Admission {
  const { logger, metrics, deadLetter } = options;
  return (msg) => {
    const h = msg.headers;
    const id = h?.get(EventHeaders.id) ?? "";
    const type = h?.get(EventHeaders.type) ?? "";
    if (msg.info.deliveryCount > 1) metrics.redelivered.add(1, metrics.attrs);
    const { span, ctx } = startSpan(options, msg, id, type);
    const handler = options.handlers[type];
    if (!id) {
      return context
        .with(ctx, () => deadLetter(msg, "the message has no ce-id header"))
        .catch((e) => reportUnsettled(logger, e, id))
        .finally(() => span.end());
    }
    if (!handler) {
      try {
        msg.ack(); // an event type this consumer does not handle
      } catch (err) {
        reportUnsettled(logger, err, id);
      }
      span.end();
      return undefined;
    }
    let message: Delivery["message"];
    try {
      message = decodeEvent(options.registry, type, msg.data).message;
    } catch (err) {
      if (err instanceof UndecodableEventError) {
        return context
          .with(ctx, () => deadLetter(msg, err.message))
          .catch((e) => reportUnsettled(logger, e, id))
          .finally(() => span.end());
      }
      reportUnsettled(logger, err, id);
      span.end();
      return undefined;
    }
    return new Delivery(msg, span, ctx, handler, message, eventContext(msg, id, type));
  };
}

function startSpan(
  options: AdmissionOptions,
  msg: JsMsg,
  id: string,
  type: string,
): { span: Span; ctx: Context } {
  const parent = propagation.extract(ROOT_CONTEXT, msg.headers, natsGetter);
  // The messaging conventions: the process span links to the message's creation context (the
  // relay's publish span), and here is its child too, so it stays in the request's trace.
  const producer = trace.getSpanContext(parent);
  const span = options.tracer.startSpan(
    `process ${msg.subject}`,
    {
      kind: SpanKind.CONSUMER,
      links: producer && isSpanContextValid(producer) ? [{ context: producer }] : undefined,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": msg.subject,
        "messaging.message.id": id,
        "messaging.consumer.group.name": options.durable,
        "cloudevents.event_type": type,
      },
    },
    parent,
  );
  return { span, ctx: trace.setSpan(parent, span) };
}

function eventContext(msg: JsMsg, id: string, type: string): EventContext {
  const h = msg.headers;
  return {
    id,
    type,
    source: h?.get(EventHeaders.source) ?? "",
    time: new Date(h?.get(EventHeaders.time) || Date.now()),
    subject: msg.subject,
    deliveryCount: msg.info.deliveryCount,
    publishTime: msg.time,
  };
}
