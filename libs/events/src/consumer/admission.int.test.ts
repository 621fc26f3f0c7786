import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createEventsFixture, type EventsFixture } from "../testing/fixture.js";
import { headerValues, rawHeaderBlock } from "./admission.js";

const DURABLE = "admission";

describe("admission reads a message's headers from its raw header block (real NATS)", () => {
  let f: EventsFixture;
  beforeEach(async () => {
    f = await createEventsFixture({ durables: [DURABLE] });
  });
  afterEach(async () => {
    await f.close();
  });

  const receive = async (h?: ReturnType<typeof natsHeaders>) => {
    await f.js.publish(`${f.namespace}meshwork.users.v1.UserRegistered`, new Uint8Array([1, 2]), {
      headers: h,
    });
    const consumer = await f.js.consumers.get(f.stream, DURABLE);
    const msg = await consumer.next({ expires: 5_000 });
    if (!msg) throw new Error("no message");
    msg.ack();
    return msg;
  };

  it("finds the block where nats.js keeps it, and reads what msg.headers holds (first value, trimmed, names as sent)", async () => {
    const h = natsHeaders();
    h.append("ce-id", "e-1");
    h.append("ce-type", "meshwork.users.v1.UserRegistered");
    h.append("ce-time", "2026-12-07T08:00:00.000Z");
    h.append("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    h.append("Mixed-Case", " spaced value ");
    h.append("repeated", "first");
    h.append("repeated", "second");
    const msg = await receive(h);
    // If a nats.js upgrade moves the raw block, admission falls back to msg.headers (slower): this fails to say so.
    expect(rawHeaderBlock(msg)).toBeInstanceOf(Uint8Array);
    const fromNats: Record<string, string | undefined> = {};
    for (const [k, vs] of msg.headers ?? []) fromNats[k] = vs[0];
    const values = headerValues(msg);
    expect(values).toEqual(fromNats);
    expect(values).toMatchObject({ "ce-id": "e-1", "Mixed-Case": "spaced value", repeated: "first" });
  });

  it("reads a message with no headers as none", async () => {
    const msg = await receive();
    expect(rawHeaderBlock(msg)).toBeUndefined();
    expect(headerValues(msg)).toEqual({});
  });
});
