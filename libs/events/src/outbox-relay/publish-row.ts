import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import {
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { AckPipeline, OutgoingMessage } from "./ack-pipeline.js";
import { HeaderBlockWriter } from "./encoded-headers.js";

/** The columns of an outbox row the relay publishes. */
export interface OutboxRow {
  id: string;
  subject: string;
  type: string;
  headers: Record<string, string>;
  payload: Uint8Array;
}

/** The header JetStream de-duplicates on. */
const MSG_ID = "Nats-Msg-Id";

/**
 * Publishes a batch of outbox rows with `Nats-Msg-Id` = event id, each in a PRODUCER span that
 * continues the trace stored with its row (the request that caused the event), and waits for
 * the broker's ack of every one (at most `timeoutMs` for the whole batch, acks pipelined: see
 * {@link AckPipeline}). Rejects with the first failure once every row has an answer.
 */
export async function publishRows(
  pipeline: AckPipeline,
  tracer: Tracer,
  rows: readonly OutboxRow[],
  timeoutMs: number,
): Promise<void> {
  const spans: Span[] = [];
  const messages = rows.map((row) => {
    const { span, message } = prepare(tracer, row);
    spans.push(span);
    return message;
  });
  const outcomes = await pipeline.publishAll(messages, timeoutMs);
  let failure: Error | undefined;
  outcomes.forEach((outcome, i) => {
    const span = spans[i] as Span;
    if (outcome instanceof Error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(outcome) });
      failure ??= outcome;
    } else {
      span.setAttribute("messaging.nats.duplicate", outcome.duplicate);
      span.setAttribute("messaging.nats.stream.sequence", outcome.seq);
    }
    span.end();
  });
  if (failure) throw failure;
}

/** Opens a row's PRODUCER span and builds its message: the row's headers, the span's trace context. */
function prepare(tracer: Tracer, row: OutboxRow): { span: Span; message: OutgoingMessage } {
  const parent = propagation.extract(ROOT_CONTEXT, row.headers);
  const span = tracer.startSpan(
    `publish ${row.subject}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.destination.name": row.subject,
        "messaging.message.id": row.id,
        "cloudevents.event_type": row.type,
      },
    },
    parent,
  );
  // Written out as one block (see EncodedHeaders), or through nats.js's headers() when a name
  // or a value would break the block (nats.js then refuses it, and says why).
  const injected: Record<string, string> = {};
  propagation.inject(trace.setSpan(parent, span), injected);
  const block = new HeaderBlockWriter();
  writeHeaders(row, injected, block);
  const h = block.finish() ?? writeHeaders(row, injected, natsHeaders());
  return { span, message: { subject: row.subject, payload: row.payload, headers: h } };
}

/**
 * Appends a message's headers to `sink`: the row's, less the trace context and what is set after
 * them, then the message id and the span's trace context (and the row's baggage, re-injected).
 */
function writeHeaders<Sink extends Pick<MsgHdrs, "append">>(
  row: OutboxRow,
  injected: Record<string, string>,
  sink: Sink,
): Sink {
  for (const k in row.headers) {
    if (k === "traceparent" || k === "tracestate" || k === MSG_ID || Object.hasOwn(injected, k)) continue;
    sink.append(k, row.headers[k] as string);
  }
  sink.append(MSG_ID, row.id);
  for (const k in injected) sink.append(k, injected[k] as string);
  return sink;
}
