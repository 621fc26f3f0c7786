import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTargets, type Targets } from "./targets.js";

// What HTTP/1.1 clients get at the gateway for each kind of call. gRPC-Web and Connect carry every
// kind of method over HTTP/1.1 (the request body streams, answers stream back: even ping-pong works);
// plain gRPC cannot (its status is in trailers, which the edge does not send over HTTP/1.1) and is
// refused UNIMPLEMENTED with the status in the headers, never answered without a status or left hanging.

const SERVICE = "/grpc.testing.TestService";

function envelope(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Splits a body of 5-byte-prefixed frames. */
function frames(body: Buffer): Array<{ flags: number; data: Buffer }> {
  const out: Array<{ flags: number; data: Buffer }> = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const len = body.readUInt32BE(at + 1);
    out.push({ flags: body[at] as number, data: body.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

/** StreamingInputCallRequest{payload{body: n zero bytes}} */
const inputOf = (n: number) => Uint8Array.of(0x0a, n + 2, 0x12, n, ...new Uint8Array(n));
/** StreamingOutputCallRequest{response_parameters[{size: n}]} */
const outputOf = (n: number) => Uint8Array.of(0x12, 0x02, 0x08, n);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function post(url: string, path: string, contentType: string, body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}${path}`,
      { method: "POST", headers: { "content-type": contentType, te: "trailers" }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.setTimeout(5_000, () => req.destroy(new Error("no answer within 5 s")));
    req.on("error", reject);
    req.end(body);
  });
}

let targets: Targets;
beforeAll(async () => {
  targets = await startTargets();
});
afterAll(async () => {
  await targets?.stop();
});

describe("HTTP/1.1 clients at the gateway", () => {
  it("gRPC over HTTP/1.1 is refused UNIMPLEMENTED in the headers, naming what to use, for every kind of method", async () => {
    for (const [method, body] of [
      ["EmptyCall", envelope(new Uint8Array())],
      ["StreamingInputCall", Buffer.concat([envelope(inputOf(3)), envelope(inputOf(4))])],
      ["StreamingOutputCall", envelope(outputOf(3))],
      ["FullDuplexCall", envelope(outputOf(3))],
    ] as const) {
      const a = await post(targets.gatewayUrl, `${SERVICE}/${method}`, "application/grpc", body);
      expect(a.status, method).toBe(200);
      expect(a.headers["grpc-status"], method).toBe("12");
      expect(decodeURIComponent(String(a.headers["grpc-message"])), method).toMatch(
        /gRPC needs HTTP\/2.*h2c.*gRPC-Web/,
      );
      expect(a.body.length, method).toBe(0);
    }
  });

  it("gRPC-Web client streaming and bidi (half duplex) over HTTP/1.1 are carried whole, status in the trailer frame", async () => {
    const input = await post(
      targets.gatewayUrl,
      `${SERVICE}/StreamingInputCall`,
      "application/grpc-web+proto",
      Buffer.concat([envelope(inputOf(3)), envelope(inputOf(4))]),
    );
    const [answer, trailer] = frames(input.body);
    // StreamingInputCallResponse{aggregated_payload_size: 7}
    expect(answer?.data).toEqual(Buffer.of(0x08, 7));
    expect(trailer?.flags).toBe(0x80);
    expect(trailer?.data.toString()).toMatch(/grpc-status: ?0/);

    const duplex = await post(
      targets.gatewayUrl,
      `${SERVICE}/FullDuplexCall`,
      "application/grpc-web+proto",
      Buffer.concat([envelope(outputOf(3)), envelope(outputOf(5))]),
    );
    const got = frames(duplex.body);
    expect(got.map((f) => f.flags)).toEqual([0, 0, 0x80]);
    // StreamingOutputCallResponse{payload{body: n zero bytes}}
    expect(got[0]?.data).toEqual(Buffer.of(0x0a, 5, 0x12, 3, 0, 0, 0));
    expect(got[1]?.data).toEqual(Buffer.of(0x0a, 7, 0x12, 5, 0, 0, 0, 0, 0));
    expect(got[2]?.data.toString()).toMatch(/grpc-status: ?0/);
  });

  it("Connect ping-pong over HTTP/1.1: the first answer arrives before the request ends", async () => {
    const first = await new Promise<Buffer>((resolve, reject) => {
      const req = http.request(
        `${targets.gatewayUrl}${SERVICE}/FullDuplexCall`,
        { method: "POST", headers: { "content-type": "application/connect+proto" }, agent: false },
        (res) => {
          res.once("data", (c: Buffer) => {
            resolve(c);
            req.destroy();
          });
        },
      );
      req.setTimeout(5_000, () => req.destroy(new Error("no first answer within 5 s")));
      req.on("error", reject);
      req.flushHeaders();
      req.write(envelope(outputOf(3))); // and the request stays open
    });
    expect(frames(first)[0]?.data).toEqual(Buffer.of(0x0a, 5, 0x12, 3, 0, 0, 0));
  });
});
