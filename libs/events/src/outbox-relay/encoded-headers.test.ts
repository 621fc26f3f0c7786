import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { HeaderBlockWriter } from "./encoded-headers.js";

const entries: [string, string][] = [
  ["ce-specversion", "1.0"],
  ["ce-id", "0192f0a0-1111-7000-8000-000000000001"],
  ["ce-source", " /meshwork/users "],
  ["ce-time", "2026-12-07T14:00:00.000Z"],
  ["Nats-Msg-Id", "0192f0a0-1111-7000-8000-000000000001"],
  ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
  ["note", "café ✓"],
];

function written(list: [string, string][]) {
  const w = new HeaderBlockWriter();
  for (const [k, v] of list) w.append(k, v);
  return w.finish();
}

/** What nats.js puts on the wire for `h` (its publish calls `encode()`, which `MsgHdrs` does not declare). */
function wire(h: MsgHdrs | undefined): string {
  return Buffer.from((h as unknown as { encode(): Uint8Array } | undefined)?.encode() ?? []).toString();
}

function byNats(list: [string, string][]) {
  const h = natsHeaders();
  for (const [k, v] of list) h.append(k, v);
  return h;
}

describe("HeaderBlockWriter / EncodedHeaders", () => {
  it("writes the bytes nats.js's headers() would put on the wire", () => {
    const h = written(entries);
    expect(h).toBeDefined();
    expect(wire(h)).toBe(wire(byNats(entries)));
  });

  it("reads like nats.js's headers", () => {
    const h = written(entries);
    const n = byNats(entries);
    expect(h?.get("ce-source")).toBe("/meshwork/users");
    expect(h?.get("Nats-Msg-Id")).toBe(n.get("Nats-Msg-Id"));
    expect(h?.has("traceparent")).toBe(true);
    expect(h?.has("tracestate")).toBe(false);
    expect(h?.keys()).toEqual(n.keys());
    expect([...(h ?? [])]).toEqual([...n]);
    expect(h?.get("note")).toBe("café ✓");
    expect({ hasError: h?.hasError, code: h?.code }).toEqual({ hasError: false, code: 0 });
  });

  it("writes what was changed after it was built", () => {
    const h = written(entries);
    h?.set("ce-id", "other");
    h?.delete("note");
    const expected = byNats(entries);
    expected.set("ce-id", "other");
    expected.delete("note");
    expect(wire(h)).toBe(wire(expected));
  });

  it("gives no block for a name or a value nats.js refuses (the caller lets nats.js say why)", () => {
    expect(written([["ce-id", "a\r\nInjected: yes"]])).toBeUndefined();
    expect(written([["ce-id", "a\nb"]])).toBeUndefined();
    expect(written([["bad name", "x"]])).toBeUndefined();
    expect(written([["bad:name", "x"]])).toBeUndefined();
    expect(written([["", "x"]])).toBeUndefined();
    expect(() => byNats([["ce-id", "a\r\nInjected: yes"]])).toThrow(/\\r or \\n/);
  });
});
