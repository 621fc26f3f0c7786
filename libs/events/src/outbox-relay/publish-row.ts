import type { JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";

/** The columns of an outbox row the relay publishes. */
export interface OutboxRow {
  id: string;
  subject: string;
  type: string;
  headers: Record<string, string>;
  payload: Uint8Array;
}

/**
 * Publishes one outbox row with `Nats-Msg-Id` = event id and waits for the broker's ack, in a
 * PRODUCER span that continues the trace stored with the row (the request that caused the event).
 */
export async function publishRow(
  js: JetStreamClient,
  tracer: Tracer,
  row: OutboxRow,
  timeoutMs: number,
): Promise<void> {
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
  const h = natsHeaders();
  for (const [k, v] of Object.entries(row.headers))
    if (k !== "traceparent" && k !== "tracestate") h.set(k, v);
  propagation.inject(trace.setSpan(parent, span), h, { set: (c, k, v) => c.set(k, v) });
  try {
    const ack = await js.publish(row.subject, row.payload, { msgID: row.id, headers: h, timeout: timeoutMs });
    span.setAttribute("messaging.nats.duplicate", ack.duplicate);
    span.setAttribute("messaging.nats.stream.sequence", ack.seq);
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
    throw err;
  } finally {
    span.end();
  }
}
