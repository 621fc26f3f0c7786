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

/**
 * A message's headers as a plain record of first values, read in one pass. `MsgHdrs.get` lists
 * and filters every key on each call, and admission reads seven headers (four `ce-*`, three for
 * the propagators); nats.js's own decoding (`msg.headers`) looks every name up again as it adds
 * it. So the header block is read here from the message's raw bytes when nats.js (3.4) keeps
 * them where {@link rawHeaderBlock} looks, and from `msg.headers` otherwise. Names are kept as
 * sent (nats.js's exact match), values trimmed, the first of a repeated name wins.
 */
export type HeaderValues = Record<string, string | undefined>;

const utf8 = new TextDecoder();

export function headerValues(msg: JsMsg): HeaderValues {
  const values: HeaderValues = Object.create(null);
  const raw = rawHeaderBlock(msg);
  if (raw === undefined) {
    const h = msg.headers;
    if (h) for (const [k, vs] of h) values[k] ??= vs[0];
    return values;
  }
  const text = utf8.decode(raw);
  // The first line is the version and status (`NATS/1.0`, `NATS/1.0 503`); then `name: value`.
  let at = text.indexOf("\r\n");
  while (at !== -1) {
    const start = at + 2;
    at = text.indexOf("\r\n", start);
    const line = at === -1 ? text.slice(start) : text.slice(start, at);
    const colon = line.indexOf(":");
    if (colon > 0) values[line.slice(0, colon)] ??= line.slice(colon + 1).trim();
  }
  return values;
}

/**
 * The header block of a message as received (nats.js 3.4 keeps the payload with its headers in
 * `_rdata`, their length in `_msg.hdr`), or `undefined` when it is not found there (then the
 * caller decodes `msg.headers`; `admission.int.test.ts` tells when an upgrade moved it).
 */
export function rawHeaderBlock(msg: JsMsg): Uint8Array | undefined {
  const inner = (msg as unknown as { msg?: { _rdata?: unknown; _msg?: { hdr?: unknown } } }).msg;
  const data = inner?._rdata;
  const hdr = inner?._msg?.hdr;
  if (!(data instanceof Uint8Array) || typeof hdr !== "number" || hdr < 12 || hdr > data.length)
    return undefined;
  // Only what looks like a header block (`NATS/1.0...` up to a blank line): should a release keep
  // the field names with another meaning, the caller decodes `msg.headers` rather than read
  // payload bytes as headers.
  if (!startsWithNats(data) || !endsWithBlankLine(data, hdr)) return undefined;
  return data.subarray(0, hdr);
}

function startsWithNats(b: Uint8Array): boolean {
  return b[0] === 0x4e && b[1] === 0x41 && b[2] === 0x54 && b[3] === 0x53 && b[4] === 0x2f; // "NATS/"
}

function endsWithBlankLine(b: Uint8Array, end: number): boolean {
  return b[end - 4] === 0x0d && b[end - 3] === 0x0a && b[end - 2] === 0x0d && b[end - 1] === 0x0a;
}

const headerGetter: TextMapGetter<HeaderValues> = {
  get: (carrier, key) => carrier[key] || undefined,
  keys: (carrier) => Object.keys(carrier),
};

/** Creates the admission step of a consumer. */
export function createAdmission(options: AdmissionOptions): Admission {
  const { logger, metrics } = options;
  return (msg) => {
    const h = headerValues(msg);
    const id = h[EventHeaders.id] ?? "";
    const type = h[EventHeaders.type] ?? "";
    if (msg.info.deliveryCount > 1) metrics.redelivered.add(1, metrics.attrs);
    const { span, ctx } = startSpan(options, msg, h, id, type);
    const handler = options.handlers[type];
    const reject = (reason: string) => deadLetterNow(options, msg, reason, span, ctx, id);
    if (!id) return reject("the message has no ce-id header");
    if (!handler) {
      try {
        msg.ack(); // an event type this consumer does not handle
      } catch (err) {
        reportUnsettled(logger, err, id);
      }
      span.end();
      return undefined;
    }
    const time = eventTime(h[EventHeaders.time]);
    if (typeof time === "string") return reject(time);
    let message: Delivery["message"];
    try {
      message = decodeEvent(options.registry, type, msg.data).message;
    } catch (err) {
      if (err instanceof UndecodableEventError) return reject(err.message);
      reportUnsettled(logger, err, id);
      span.end();
      return undefined;
    }
    return new Delivery(msg, span, ctx, handler, message, eventContext(msg, h, id, type, time));
  };
}

/** Dead-letters a malformed message under its span (ended once settled). */
function deadLetterNow(
  options: AdmissionOptions,
  msg: JsMsg,
  reason: string,
  span: Span,
  ctx: Context,
  id: string,
): Promise<void> {
  return context
    .with(ctx, () => options.deadLetter(msg, reason))
    .catch((e) => reportUnsettled(options.logger, e, id))
    .finally(() => span.end());
}

function startSpan(
  options: AdmissionOptions,
  msg: JsMsg,
  headers: HeaderValues,
  id: string,
  type: string,
): { span: Span; ctx: Context } {
  const parent = propagation.extract(ROOT_CONTEXT, headers, headerGetter);
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

/** An RFC 3339 timestamp, as CloudEvents' `time` attribute is (what the publisher writes). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * The event's `ce-time`: now when the header is absent (CloudEvents makes it optional), else the
 * timestamp it holds; a string (the dead-letter reason) when it holds no valid RFC 3339 time,
 * which handlers would otherwise get as an Invalid Date.
 */
function eventTime(header: string | undefined): Date | string {
  if (!header) return new Date();
  const time = new Date(header);
  if (!RFC3339.test(header) || Number.isNaN(time.getTime()))
    return `the message's ce-time header is not an RFC 3339 timestamp: ${JSON.stringify(header.slice(0, 64))}`;
  return time;
}

function eventContext(msg: JsMsg, h: HeaderValues, id: string, type: string, time: Date): EventContext {
  return {
    id,
    type,
    source: h[EventHeaders.source] ?? "",
    time,
    subject: msg.subject,
    deliveryCount: msg.info.deliveryCount,
    publishTime: msg.time,
  };
}
