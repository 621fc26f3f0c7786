import type { JsMsg } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { copyHeaders } from "./dead-letter.js";

/** A message as nats.js 3.4 holds it, whose header block nats.js itself refuses to decode. */
function undecodable(block: string): JsMsg {
  const bytes = new TextEncoder().encode(`${block}payload`);
  return {
    get headers(): never {
      throw new Error("'header' ' ' is not a valid character in a header name");
    },
    msg: { _rdata: bytes, _msg: { hdr: block.length } },
  } as unknown as JsMsg;
}

describe("copyHeaders (dead letters)", () => {
  it("copies what a dead letter can carry of a header block nats.js refuses, and reads its event id and type", () => {
    const msg = undecodable("NATS/1.0\r\nce-id: ev-1\r\nbad name: x\r\nce-type: meshwork.t.v1.X\r\n\r\n");
    const to = headers();
    const first = copyHeaders(msg, to);
    expect(first["ce-id"]).toBe("ev-1");
    expect(first["ce-type"]).toBe("meshwork.t.v1.X");
    expect(to.get("ce-id")).toBe("ev-1");
    expect(to.get("ce-type")).toBe("meshwork.t.v1.X");
    // Not a name NATS sends: left out of the letter rather than failing the dead-lettering.
    expect([...to.keys()]).toEqual(["ce-id", "ce-type"]);
  });

  it("copies every value of a decodable message's headers", () => {
    const h = headers();
    h.append("ce-id", "ev-2");
    h.append("x-many", "a");
    h.append("x-many", "b");
    const to = headers();
    const first = copyHeaders({ headers: h } as unknown as JsMsg, to);
    expect(first).toEqual({ "ce-id": "ev-2", "x-many": "a" });
    expect(to.values("x-many")).toEqual(["a", "b"]);
  });
});
