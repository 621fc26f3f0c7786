import http2 from "node:http2";
import zlib from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { captureLogs, grpc } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createService, type Service } from "./service.js";
import { testRuntimeConfig } from "./testing.js";

// Issue 25.8: a compressed request is read like any other: well-formed it is served, malformed it
// is INVALID_ARGUMENT naming the problem (was INTERNAL: the decode guard skipped compressed
// bodies), in a compression the server does not know it is UNIMPLEMENTED naming the ones it does.

const USER_ID = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const GET_USER = "/meshwork.users.v1.UserService/GetUser";
const good = Uint8Array.of(0x0a, USER_ID.length, ...Buffer.from(USER_ID));
const truncated = Uint8Array.of(0x08, 0xff);
const notUtf8 = Uint8Array.of(0x0a, 0x02, 0xc3, 0x28);
const gzip = (b: Uint8Array) => new Uint8Array(zlib.gzipSync(b));
const brotli = (b: Uint8Array) => new Uint8Array(zlib.brotliCompressSync(b));

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

/** One request on a fresh HTTP/2 connection; the raw answer. */
async function h2Send(url: string, headers: http2.OutgoingHttpHeaders, body?: Uint8Array): Promise<Raw> {
  const session = http2.connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ":method": body ? "POST" : "GET", ...headers });
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

/** The status of a gRPC answer (trailers, or headers when trailers-only). */
const grpcStatus = (r: Raw) => {
  const t = r.trailers["grpc-status"] !== undefined ? r.trailers : r.headers;
  return { code: Number(t["grpc-status"]), message: decodeURIComponent(String(t["grpc-message"] ?? "")) };
};

/** The status in a gRPC-Web body's trailer frame. */
const grpcWebStatus = (r: Raw) => {
  let at = 0;
  let text = "";
  while (at + 5 <= r.body.length) {
    const len = r.body.readUInt32BE(at + 1);
    if ((r.body[at] as number) & 0x80) text = r.body.subarray(at + 5, at + 5 + len).toString();
    at += 5 + len;
  }
  const code = /grpc-status:\s*(\d+)/.exec(text)?.[1];
  const message = /grpc-message:\s*(.*)/.exec(text)?.[1]?.trim() ?? "";
  return { code: Number(code), message: decodeURIComponent(message) };
};

/** The end-of-stream error of a Connect streaming answer. */
const connectStreamError = (r: Raw) => {
  let at = 0;
  let end: { error?: { code: string; message: string } } = {};
  while (at + 5 <= r.body.length) {
    const len = r.body.readUInt32BE(at + 1);
    if ((r.body[at] as number) & 0x02) end = JSON.parse(r.body.subarray(at + 5, at + 5 + len).toString());
    at += 5 + len;
  }
  return end.error;
};

const connectUnary = (encoding: string) => ({
  ":path": GET_USER,
  "content-type": "application/proto",
  "connect-protocol-version": "1",
  "content-encoding": encoding,
});
const grpcHeaders = (encoding?: string) => ({
  ":path": GET_USER,
  "content-type": "application/grpc",
  te: "trailers",
  ...(encoding ? { "grpc-encoding": encoding } : {}),
});

/** A grpc-js client (its own framing and gzip) sending raw request bytes. */
function grpcJsCall(
  address: string,
  request: Uint8Array,
): Promise<{ code: number; details: string; body?: Buffer }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.default_compression_algorithm": grpc.compressionAlgorithms.gzip,
  });
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      GET_USER,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      request,
      (err, res) => {
        client.close();
        resolve(err ? { code: err.code, details: err.details } : { code: 0, details: "", body: res });
      },
    );
  });
}

/**
 * Asserts every compressed-request case against a server at `url`: the service directly here, the
 * gateway in front of it in the gateway's own test (`apps/gateway/src/compression.int.test.ts`).
 */
function describeCompression(target: () => { url: string; unhandled: () => unknown[] }) {
  const url = () => target().url;

  it("a grpc-js client with gzip is served, and its malformed message is INVALID_ARGUMENT", async () => {
    const address = new URL(url()).host;
    const ok = await grpcJsCall(address, good);
    expect(ok.code).toBe(0);
    expect(ok.body?.toString()).toContain(USER_ID);
    const bad = await grpcJsCall(address, truncated);
    expect(bad.code).toBe(Code.InvalidArgument);
    // grpc-js reads grpc-message with decodeURI, which leaves Connect's %3A for ":" as it is.
    expect(bad.details).toMatch(/invalid request message(:|%3A) truncated/);
    const utf8 = await grpcJsCall(address, notUtf8);
    expect(utf8.code).toBe(Code.InvalidArgument);
    expect(utf8.details).toMatch(/not valid UTF-8/);
  });

  it.each([
    ["gzip", gzip],
    ["br", brotli],
  ] as const)(
    "Connect unary with content-encoding %s: served; malformed INVALID_ARGUMENT",
    async (name, pack) => {
      const ok = await h2Send(url(), connectUnary(name), pack(good));
      expect(ok.headers[":status"]).toBe(200);
      expect(ok.body.toString()).toContain(USER_ID);
      const bad = await h2Send(url(), connectUnary(name), pack(truncated));
      expect(bad.headers[":status"]).toBe(400);
      expect(JSON.parse(bad.body.toString())).toEqual({
        code: "invalid_argument",
        message: "invalid request message: truncated (premature end of a varint or length-delimited field)",
      });
    },
  );

  it("a Connect GET with compression=gzip: served; malformed INVALID_ARGUMENT", async () => {
    const path = (m: Uint8Array) =>
      `${GET_USER}?connect=v1&encoding=proto&compression=gzip&base64=1&message=${Buffer.from(gzip(m)).toString("base64url")}`;
    const ok = await h2Send(url(), { ":path": path(good) });
    expect(ok.headers[":status"]).toBe(200);
    const bad = await h2Send(url(), { ":path": path(notUtf8) });
    expect(bad.headers[":status"]).toBe(400);
    expect(JSON.parse(bad.body.toString())).toMatchObject({
      code: "invalid_argument",
      message: expect.stringMatching(/not valid UTF-8/),
    });
  });

  it("gRPC and gRPC-Web with grpc-encoding gzip: malformed INVALID_ARGUMENT", async () => {
    const g = grpcStatus(await h2Send(url(), grpcHeaders("gzip"), envelope(gzip(truncated), 1)));
    expect(g).toMatchObject({ code: Code.InvalidArgument, message: expect.stringMatching(/truncated/) });
    const web = await h2Send(
      url(),
      {
        ":path": GET_USER,
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "grpc-encoding": "gzip",
      },
      envelope(gzip(truncated), 1),
    );
    expect(grpcWebStatus(web)).toMatchObject({
      code: Code.InvalidArgument,
      message: expect.stringMatching(/truncated/),
    });
    const webOk = await h2Send(
      url(),
      {
        ":path": GET_USER,
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "grpc-encoding": "gzip",
      },
      envelope(gzip(good), 1),
    );
    expect(grpcWebStatus(webOk).code).toBe(0);
  });

  it("Connect streaming with connect-content-encoding gzip: malformed INVALID_ARGUMENT", async () => {
    const r = await h2Send(
      url(),
      {
        ":path": "/grpc.health.v1.Health/Watch",
        "content-type": "application/connect+proto",
        "connect-protocol-version": "1",
        "connect-content-encoding": "gzip",
      },
      envelope(gzip(truncated), 1),
    );
    expect(connectStreamError(r)).toMatchObject({
      code: "invalid_argument",
      message: expect.stringMatching(/truncated/),
    });
  });

  it("a compressed envelope no grpc-encoding names is INVALID_ARGUMENT", async () => {
    const r = grpcStatus(await h2Send(url(), grpcHeaders(), envelope(gzip(good), 1)));
    expect(r).toEqual({
      code: Code.InvalidArgument,
      message: "invalid request message: compressed (flag 1) but grpc-encoding names no compression",
    });
  });

  it("a compressed body larger than the limit once decompressed (a gzip bomb) is RESOURCE_EXHAUSTED", async () => {
    // 8 MiB of zeros (past the 1 MiB limit of these tests) in about 8 KiB of gzip.
    const zeros = new Uint8Array(zlib.gzipSync(Buffer.alloc(8 * 1024 * 1024)));
    expect(zeros.length).toBeLessThan(64 * 1024);
    const g = grpcStatus(await h2Send(url(), grpcHeaders("gzip"), envelope(zeros, 1)));
    expect(g.code).toBe(Code.ResourceExhausted);
    const c = await h2Send(url(), connectUnary("gzip"), zeros);
    expect(JSON.parse(c.body.toString())).toMatchObject({ code: "resource_exhausted" });
  });

  it("a body that does not decompress is INVALID_ARGUMENT", async () => {
    expect(grpcStatus(await h2Send(url(), grpcHeaders("gzip"), envelope(good, 1)))).toMatchObject({
      code: Code.InvalidArgument,
    });
    const c = await h2Send(url(), connectUnary("gzip"), good);
    expect(JSON.parse(c.body.toString())).toMatchObject({ code: "invalid_argument" });
  });

  it("an unknown compression is UNIMPLEMENTED naming the accepted ones (gRPC: grpc-accept-encoding; Connect: 501, accept-encoding)", async () => {
    const g = await h2Send(url(), grpcHeaders("snappy"), envelope(good, 1));
    expect(grpcStatus(g)).toMatchObject({
      code: Code.Unimplemented,
      message: expect.stringMatching(/snappy/),
    });
    expect({ ...g.headers, ...g.trailers }["grpc-accept-encoding"]).toBe("gzip,br");
    const c = await h2Send(url(), connectUnary("snappy"), good);
    expect(c.headers[":status"]).toBe(501);
    expect(c.headers["accept-encoding"]).toBe("gzip,br");
    expect(JSON.parse(c.body.toString())).toMatchObject({ code: "unimplemented" });
  });

  it("logs none of it as an unhandled error", () => {
    expect(target().unhandled()).toEqual([]);
  });
}

describe.each([
  ["the fast path on", true],
  ["the fast path off", false],
])("compressed requests straight to a service, with %s", (_name, fastPath) => {
  let service: Service;
  let url = "";
  const { lines, destination } = captureLogs();

  beforeAll(async () => {
    service = createService({
      name: "users",
      config: testRuntimeConfig({ logLevel: "info" }),
      fastPath,
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      logger: createLogger({ service: "users", destination }),
      telemetry: createTelemetry({ serviceName: "users" }),
      routes(router) {
        router.service(UserService, {
          async getUser(req) {
            return { user: create(UserSchema, { id: req.id }) };
          },
          async registerUser() {
            throw new ConnectError("not here", Code.Unimplemented);
          },
          async login() {
            throw new ConnectError("not here", Code.Unimplemented);
          },
          async listUsers() {
            return { users: [], nextPageToken: "" };
          },
        });
      },
    });
    ({ url } = await service.start());
  });
  afterAll(async () => {
    await service.shutdown();
  });

  describeCompression(() => ({ url, unhandled: () => lines.filter((l) => l.msg === "unhandled error") }));
});
