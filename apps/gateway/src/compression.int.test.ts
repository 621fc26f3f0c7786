import http2 from "node:http2";
import zlib from "node:zlib";
import { Code } from "@connectrpc/connect";
import { meshworkFiles } from "@meshwork/contracts";
import { grpc } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ids, startUsersUpstream, testGatewayConfig, type UsersUpstream } from "../test/users-upstream.js";
import { createGateway, type Gateway } from "./gateway.js";

// Issue 25.8 through the gateway: compressed requests reach the service as sent and get its
// answer (served, INVALID_ARGUMENT when malformed, UNIMPLEMENTED for an unknown compression,
// never INTERNAL); gRPC-Web text is refused at the edge UNIMPLEMENTED. The service side is
// libs/runtime/src/compression.test.ts.

const GET_USER = "/meshwork.users.v1.UserService/GetUser";
const good = Uint8Array.of(0x0a, Ids.ok.length, ...Buffer.from(Ids.ok));
const truncated = Uint8Array.of(0x08, 0xff);
const gzip = (b: Uint8Array) => new Uint8Array(zlib.gzipSync(b));

const openPolicies = new Map(
  meshworkFiles.flatMap((f) =>
    f.services.flatMap((s) =>
      s.methods.map((m) => [`/${s.typeName}/${m.name}`, { kind: "public" } as const]),
    ),
  ),
);

function envelope(message: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

interface Raw {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

async function h2Post(url: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<Raw> {
  const session = http2.connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": GET_USER, ...headers });
      const chunks: Buffer[] = [];
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => {
        head = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => resolve({ headers: head, trailers, body: Buffer.concat(chunks) }));
      stream.on("error", reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

const grpcStatus = (r: Raw) => {
  const t = r.trailers["grpc-status"] !== undefined ? r.trailers : r.headers;
  return { code: Number(t["grpc-status"]), message: decodeURIComponent(String(t["grpc-message"] ?? "")) };
};

function grpcJsCall(address: string, request: Uint8Array): Promise<{ code: number; details: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.default_compression_algorithm": grpc.compressionAlgorithms.gzip,
  });
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      GET_USER,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      request,
      (err) => {
        client.close();
        resolve(err ? { code: err.code, details: err.details } : { code: 0, details: "" });
      },
    );
  });
}

describe("compressed requests through the gateway (issue 25.8)", () => {
  let upstream: UsersUpstream;
  let gateway: Gateway;
  let url: string;

  beforeAll(async () => {
    upstream = await startUsersUpstream();
    gateway = createGateway({ config: testGatewayConfig(upstream.url), policies: openPolicies });
    ({ url } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.service.shutdown();
  });

  it("a grpc-js client with gzip is served; its malformed message is INVALID_ARGUMENT", async () => {
    const address = new URL(url).host;
    expect((await grpcJsCall(address, good)).code).toBe(0);
    const bad = await grpcJsCall(address, truncated);
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.details).toMatch(/truncated/);
  });

  it("Connect unary with content-encoding gzip, over HTTP/2 and HTTP/1.1: served; malformed INVALID_ARGUMENT", async () => {
    const headers = {
      "content-type": "application/proto",
      "connect-protocol-version": "1",
      "content-encoding": "gzip",
    };
    const ok = await h2Post(url, headers, gzip(good));
    expect(ok.headers[":status"]).toBe(200);
    expect(ok.body.toString()).toContain(Ids.ok);
    const bad = await h2Post(url, headers, gzip(truncated));
    expect(bad.headers[":status"]).toBe(400);
    expect(JSON.parse(bad.body.toString())).toMatchObject({
      code: "invalid_argument",
      message: expect.stringMatching(/invalid request message: truncated/),
    });
    const h1 = await fetch(`${url}${GET_USER}`, { method: "POST", headers, body: gzip(truncated) });
    expect(h1.status).toBe(400);
    expect(await h1.json()).toMatchObject({ code: "invalid_argument" });
  });

  it("gRPC-Web with grpc-encoding gzip and a malformed message: INVALID_ARGUMENT in the trailer frame", async () => {
    const r = await h2Post(
      url,
      { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "grpc-encoding": "gzip" },
      envelope(gzip(truncated), 1),
    );
    expect(r.body.toString("latin1")).toMatch(/grpc-status: ?3\r\n/);
  });

  it("a compressed envelope without grpc-encoding is INVALID_ARGUMENT; an unknown compression UNIMPLEMENTED with grpc-accept-encoding", async () => {
    const grpcHeaders = { "content-type": "application/grpc", te: "trailers" };
    expect(grpcStatus(await h2Post(url, grpcHeaders, envelope(gzip(good), 1)))).toMatchObject({
      code: Code.InvalidArgument,
      message: expect.stringMatching(/grpc-encoding names no compression/),
    });
    const snappy = await h2Post(url, { ...grpcHeaders, "grpc-encoding": "snappy" }, envelope(good, 1));
    expect(grpcStatus(snappy).code).toBe(Code.Unimplemented);
    expect({ ...snappy.headers, ...snappy.trailers }["grpc-accept-encoding"]).toBe("gzip,br");
  });

  it("gRPC-Web text is UNIMPLEMENTED at the edge, trailers-only, and never reaches the service", async () => {
    const before = upstream.methods.length;
    const r = await h2Post(
      url,
      { "content-type": "application/grpc-web-text", "x-grpc-web": "1" },
      Buffer.from(Buffer.from(envelope(good)).toString("base64")),
    );
    expect(r.headers[":status"]).toBe(200);
    expect(grpcStatus(r)).toEqual({
      code: Code.Unimplemented,
      message: expect.stringContaining("send application/grpc-web+proto"),
    });
    expect(upstream.methods.length).toBe(before);
  });
});
