import { describe, expect, it } from "vitest";
import { readPubAck } from "./ack-pipeline.js";

const bytes = (text: string) => new TextEncoder().encode(text);

describe("readPubAck (the relay's fast reading of a PubAck)", () => {
  it("reads the broker's PubAck, with and without the duplicate flag", () => {
    expect(readPubAck(bytes('{"stream":"EVENTS_a1","seq":42}'))).toEqual({
      stream: "EVENTS_a1",
      seq: 42,
      duplicate: false,
    });
    expect(readPubAck(bytes('{"stream":"EVENTS_a1","seq":9007199254740,"duplicate":true}'))).toEqual({
      stream: "EVENTS_a1",
      seq: 9007199254740,
      duplicate: true,
    });
  });

  it("gives the same name whether the stream repeats or changes", () => {
    expect(readPubAck(bytes('{"stream":"A","seq":1}'))?.stream).toBe("A");
    expect(readPubAck(bytes('{"stream":"B","seq":2}'))?.stream).toBe("B");
    expect(readPubAck(bytes('{"stream":"B","seq":3}'))?.stream).toBe("B");
    expect(readPubAck(bytes('{"stream":"AB","seq":4}'))?.stream).toBe("AB");
  });

  it("leaves every other shape to JSON (undefined): errors, a domain, escapes, non-ASCII, trailing bytes", () => {
    for (const text of [
      '{"error":{"code":503,"err_code":10039,"description":"no stream"}}',
      '{"stream":"S","domain":"hub","seq":1}',
      '{"stream":"S","seq":1,"domain":"hub"}',
      '{"stream":"S\\"x","seq":1}',
      '{"stream":"Ström","seq":1}',
      '{"stream":"","seq":1}',
      '{"stream":"S","seq":}',
      '{"stream":"S","seq":1}x',
      '{"stream":"S","seq":1,"duplicate":false}',
      '{"stream":"S","seq":1234567890123456}',
      '{"stream":"S',
      "",
    ]) {
      expect(readPubAck(bytes(text)), text).toBeUndefined();
    }
  });

  it("reads what JSON.parse reads for every ack it accepts", () => {
    for (const text of ['{"stream":"s-1_x","seq":0}', '{"stream":"x","seq":7,"duplicate":true}']) {
      const parsed = JSON.parse(text) as { stream: string; seq: number; duplicate?: boolean };
      expect(readPubAck(bytes(text))).toEqual({ ...parsed, duplicate: parsed.duplicate === true });
    }
  });
});
