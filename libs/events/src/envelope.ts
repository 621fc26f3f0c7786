import { randomUUID } from "node:crypto";
import { type DescMessage, fromBinary, type MessageShape, type Registry, toBinary } from "@bufbuild/protobuf";

/** A domain event ready to be stored in an outbox and published. */
export interface EventEnvelope {
  /** `ce-id`: unique per event; also the `Nats-Msg-Id` and the consumers' inbox key. */
  id: string;
  /** `ce-type`: the full Protobuf message name, e.g. `meshwork.users.v1.UserRegistered`. */
  type: string;
  /** `ce-source`: the producing service, e.g. `/meshwork/users`. */
  source: string;
  /** `ce-time`. */
  time: Date;
  /** The NATS subject: `<namespace><type>`. */
  subject: string;
  /** The message, Protobuf binary (`content-type: application/protobuf`). */
  data: Uint8Array;
}

/** The header names carried on every event message (CloudEvents NATS binding, plus W3C). */
export const EventHeaders = {
  specVersion: "ce-specversion",
  id: "ce-id",
  type: "ce-type",
  source: "ce-source",
  time: "ce-time",
  contentType: "content-type",
  traceparent: "traceparent",
  tracestate: "tracestate",
} as const;

/** The subject an event of `type` is published on. */
export function eventSubject(namespace: string, type: string): string {
  return `${namespace}${type}`;
}

/** Wraps a Protobuf message as an event of its own type. */
export function createEnvelope<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
  options: { source: string; namespace: string; id?: string; time?: Date },
): EventEnvelope {
  return {
    id: options.id ?? randomUUID(),
    type: schema.typeName,
    source: options.source,
    time: options.time ?? new Date(),
    subject: eventSubject(options.namespace, schema.typeName),
    data: toBinary(schema, message),
  };
}

/** The CloudEvents headers of an envelope, without trace context. */
export function cloudEventHeaders(
  e: Pick<EventEnvelope, "id" | "type" | "source" | "time">,
): Record<string, string> {
  return {
    [EventHeaders.specVersion]: "1.0",
    [EventHeaders.id]: e.id,
    [EventHeaders.type]: e.type,
    [EventHeaders.source]: e.source,
    [EventHeaders.time]: e.time.toISOString(),
    [EventHeaders.contentType]: "application/protobuf",
  };
}

/** Thrown for a message that is not an event this code can read; it is dead-lettered at once. */
export class UndecodableEventError extends Error {
  override readonly name = "UndecodableEventError";
}

/** Decodes an event's payload with the schema its `ce-type` names in `registry`. */
export function decodeEvent(
  registry: Registry,
  type: string | undefined,
  data: Uint8Array,
): { schema: DescMessage; message: MessageShape<DescMessage> } {
  if (!type) throw new UndecodableEventError("the message has no ce-type header");
  const schema = registry.getMessage(type);
  if (!schema) throw new UndecodableEventError(`unknown event type ${type}`);
  try {
    return { schema, message: fromBinary(schema, data) };
  } catch (err) {
    throw new UndecodableEventError(`payload is not a valid ${type}`, { cause: err });
  }
}
