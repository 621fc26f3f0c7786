import { describe, expect, it } from "vitest";
import { cutShort, endpointFailed, HeldAnswer, outcomeOf } from "./answer.js";
import { ClientCalls } from "./client-calls.js";

/** A gRPC-Web frame: flags, length, payload. */
function frame(flags: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

describe("held answers", () => {
  it("holds chunks within the answer's and the gateway's limits, and hands them over in one buffer", () => {
    const total = { bytes: 0 };
    const held = new HeldAnswer(total, undefined, 10, 100);
    expect(held.add(Buffer.from("abcd"))).toBe(true);
    expect(held.add(Buffer.from("efgh"))).toBe(true);
    expect([held.bytes, total.bytes]).toEqual([8, 8]);
    expect(held.add(Buffer.from("ijk"))).toBe(false); // past the answer's limit
    expect(held.take()?.toString()).toBe("abcdefghijk");
    expect([held.bytes, total.bytes, held.chunks.length]).toEqual([0, 0, 0]);
    expect(held.take()).toBeUndefined();
  });

  it("stops holding once the gateway holds too much over every call, and gives it back when dropped", () => {
    const total = { bytes: 95 };
    const held = new HeldAnswer(total, undefined, 10, 100);
    expect(held.add(Buffer.from("abcd"))).toBe(true);
    expect(held.add(Buffer.from("ef"))).toBe(false);
    held.drop();
    expect(total.bytes).toBe(95);
    expect(held.bytes).toBe(0);
  });

  it("counts what it holds for its client, stops holding past the client's limit, and gives it back", () => {
    const clients = new ClientCalls(10, 6);
    const client = {
      holdBytes: (n: number) => clients.hold("10.0.0.1", n),
      unholdBytes: (n: number) => clients.unhold("10.0.0.1", n),
    };
    const total = { bytes: 0 };
    const held = new HeldAnswer(total, client, 100, 1000);
    expect(held.add(Buffer.from("abcd"))).toBe(true);
    expect(clients.held("10.0.0.1")).toBe(4);
    expect(held.add(Buffer.from("efg"))).toBe(false); // 7 bytes past the client's 6: streamed from here
    expect(clients.held("10.0.0.1")).toBe(4);
    expect(held.take()?.toString()).toBe("abcdefg");
    expect([clients.held("10.0.0.1"), total.bytes]).toEqual([0, 0]);
  });

  it("hands a single chunk over as it is", () => {
    const held = new HeldAnswer({ bytes: 0 });
    const chunk = Buffer.from("one");
    held.add(chunk);
    expect(held.take()).toBe(chunk);
  });
});

describe("answers cut short", () => {
  const grpcWeb = { "content-type": "application/grpc-web+proto" };
  const message = frame(0, Buffer.from("hello"));
  const trailer = frame(0x80, Buffer.from("grpc-status: 0\r\n"));

  it("takes a gRPC-Web answer as whole only with whole frames ending in the trailer frame", () => {
    const whole = Buffer.concat([message, trailer]);
    expect(cutShort(grpcWeb, [whole], whole.length)).toBeUndefined();
    expect(cutShort(grpcWeb, [message, trailer], whole.length)).toBeUndefined();
    expect(cutShort(grpcWeb, [message], message.length)).toBe("ended the answer before its trailers");
    const partial = whole.subarray(0, whole.length - 3);
    expect(cutShort(grpcWeb, [partial], partial.length)).toBe("ended the answer before its trailers");
    expect(cutShort(grpcWeb, [], 0)).toBe("ended the answer before its trailers");
  });

  it("takes a gRPC-Web trailers-only answer and gRPC-Web text (not parsed) as whole", () => {
    expect(cutShort({ ...grpcWeb, "grpc-status": "14" }, [], 0)).toBeUndefined();
    expect(
      cutShort({ "content-type": "application/grpc-web-text" }, [message], message.length),
    ).toBeUndefined();
  });

  it("checks other answers against their content-length", () => {
    const json = { "content-type": "application/json", "content-length": "10" };
    expect(cutShort(json, [Buffer.alloc(10)], 10)).toBeUndefined();
    expect(cutShort(json, [Buffer.alloc(4)], 4)).toBe("ended the answer after 4 of 10 bytes");
    expect(cutShort({ "content-type": "application/json" }, [Buffer.alloc(4)], 4)).toBeUndefined();
    expect(cutShort({ "content-length": "x" }, [Buffer.alloc(4)], 4)).toBeUndefined();
  });
});

describe("outcomes", () => {
  it("names an answer's outcome by its gRPC status, else its HTTP status", () => {
    expect(outcomeOf("0", 200)).toBe("OK");
    expect(outcomeOf("5", 200)).toBe("NotFound");
    expect(outcomeOf("14", 200)).toBe("Unavailable");
    expect(outcomeOf("99", 200)).toBe("99");
    expect(outcomeOf(undefined, 200)).toBe("http_200");
    expect(outcomeOf(undefined, 404)).toBe("http_404");
  });

  it("counts UNAVAILABLE and any 503 against the endpoint", () => {
    expect(endpointFailed("14", 200)).toBe(true);
    expect(endpointFailed(undefined, 503)).toBe(true);
    expect(endpointFailed("0", 503)).toBe(true);
    expect(endpointFailed("13", 500)).toBe(false);
    expect(endpointFailed("0", 200)).toBe(false);
  });
});
