import http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { captureLogs } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createService, type Service } from "./service.js";
import { testRuntimeConfig } from "./testing.js";

// Issue 25.8: a request the server cannot use is INVALID_ARGUMENT naming the problem, on every
// protocol and both server paths, never INTERNAL (Connect's own parser says INTERNAL).

const USER_ID = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";

/** Request messages (GetUserRequest { string id = 1 }, HealthCheckRequest { string service = 1 }). */
const bodies: ReadonlyArray<[string, Uint8Array, RegExp]> = [
  ["a truncated varint", Uint8Array.of(0x08, 0xff), /truncated/],
  ["a truncated length-delimited field", Uint8Array.of(0x0a, 0x05, 0x61), /truncated/],
  ["a bad wire type (7)", Uint8Array.of(0x0f, 0x00), /bad field tag.*wire type 7/],
  ["field number 0", Uint8Array.of(0x00, 0x01), /bad field tag.*field no 0/],
  ["invalid UTF-8 in a string field", Uint8Array.of(0x0a, 0x02, 0xc3, 0x28), /not valid UTF-8/],
  // 200 nested groups of an unknown field 15 (protobuf-es reads 100 levels).
  ["deeply nested groups", new Uint8Array(200).fill(0x7b), /nested too deeply/],
];

interface Answer {
  code: number | string | undefined;
  message: string;
}

function envelope(message: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** One request on a fresh HTTP/2 connection; the raw answer. */
async function send(
  url: string,
  path: string,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array,
): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
  const session = http2.connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": path, ...headers });
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

/** The protocols, each with how to frame a request message and read the status of the answer. */
const protocols: Record<
  string,
  {
    headers: http2.OutgoingHttpHeaders;
    frame(m: Uint8Array): Uint8Array;
    read(r: Awaited<ReturnType<typeof send>>): Answer;
  }
> = {
  grpc: {
    headers: { "content-type": "application/grpc", te: "trailers" },
    frame: (m) => envelope(m),
    read: (r) => {
      const t = r.trailers["grpc-status"] !== undefined ? r.trailers : r.headers;
      return { code: Number(t["grpc-status"]), message: decodeURIComponent(String(t["grpc-message"] ?? "")) };
    },
  },
  "grpc-web": {
    headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
    frame: (m) => envelope(m),
    read: (r) => {
      // The trailers are the last frame of the body (flag 0x80), as HTTP/1-style header lines.
      let at = 0;
      let text = "";
      while (at + 5 <= r.body.length) {
        const len = r.body.readUInt32BE(at + 1);
        if ((r.body[at] as number) & 0x80) text = r.body.subarray(at + 5, at + 5 + len).toString();
        at += 5 + len;
      }
      const fields = Object.fromEntries(
        text
          .split("\r\n")
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf(":")).trim(), l.slice(l.indexOf(":") + 1).trim()]),
      );
      const source = fields["grpc-status"] !== undefined ? fields : r.headers;
      return {
        code: Number(source["grpc-status"]),
        message: decodeURIComponent(String(source["grpc-message"] ?? "")),
      };
    },
  },
  connect: {
    headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
    frame: (m) => m,
    read: (r) => {
      const json = JSON.parse(r.body.toString()) as { code: string; message: string };
      return { code: json.code, message: json.message };
    },
  },
};

/** The same for a server-streaming method over the Connect streaming protocol. */
function readConnectStream(r: Awaited<ReturnType<typeof send>>): Answer {
  let at = 0;
  let end: { error?: { code: string; message: string } } = {};
  while (at + 5 <= r.body.length) {
    const len = r.body.readUInt32BE(at + 1);
    if ((r.body[at] as number) & 0x02) end = JSON.parse(r.body.subarray(at + 5, at + 5 + len).toString());
    at += 5 + len;
  }
  return { code: end.error?.code, message: end.error?.message ?? "" };
}

const expected = (protocol: string) => (protocol === "connect" ? "invalid_argument" : Code.InvalidArgument);

describe.each([
  ["the fast path on", true],
  ["the fast path off", false],
])("bad input, with %s", (_name, fastPath) => {
  let service: Service;
  let url: string;
  const entered: string[] = [];
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
            entered.push(req.id);
            return { user: create(UserSchema, { id: req.id }) };
          },
          async registerUser(req) {
            entered.push(req.email);
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

  describe.each(Object.keys(protocols))("over %s", (protocol) => {
    const p = protocols[protocol] as (typeof protocols)[string];

    it.each(bodies)("refuses %s: INVALID_ARGUMENT naming it (unary)", async (_what, body, words) => {
      const before = entered.length;
      const answer = p.read(
        await send(url, "/meshwork.users.v1.UserService/GetUser", p.headers, p.frame(body)),
      );
      expect(answer.code).toBe(expected(protocol));
      expect(answer.message).toMatch(/invalid request message/);
      expect(answer.message).toMatch(words);
      expect(entered.length).toBe(before);
    });

    it("still answers a well-formed message (the guard replays the body it read)", async () => {
      const ok = Uint8Array.of(0x0a, USER_ID.length, ...Buffer.from(USER_ID));
      const r = await send(url, "/meshwork.users.v1.UserService/GetUser", p.headers, p.frame(ok));
      if (protocol === "connect") {
        expect(r.headers[":status"]).toBe(200);
        expect(r.body.toString()).toContain(USER_ID);
      } else {
        expect(p.read(r).code).toBe(0);
        expect(r.body.toString()).toContain(USER_ID);
      }
    });
  });

  it.each(bodies)("refuses %s in a Connect GET's message", async (_what, body, words) => {
    const get = (message: Uint8Array) =>
      fetch(
        `${url}/meshwork.users.v1.UserService/GetUser?connect=v1&encoding=proto&base64=1&message=${Buffer.from(message).toString("base64url")}`,
      );
    const res = await get(body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { code: string; message: string };
    expect(json.code).toBe("invalid_argument");
    expect(json.message).toMatch(words);
    const ok = await get(Uint8Array.of(0x0a, USER_ID.length, ...Buffer.from(USER_ID)));
    expect(ok.status).toBe(200);
  });

  it.each(bodies)(
    "refuses %s on a server-streaming method (gRPC and Connect streaming)",
    async (_what, body, words) => {
      const path = "/grpc.health.v1.Health/Watch";
      const grpc = protocols.grpc as (typeof protocols)[string];
      const g = grpc.read(await send(url, path, grpc.headers, envelope(body)));
      expect(g.code).toBe(Code.InvalidArgument);
      expect(g.message).toMatch(words);
      const c = readConnectStream(
        await send(
          url,
          path,
          { "content-type": "application/connect+proto", "connect-protocol-version": "1" },
          envelope(body),
        ),
      );
      expect(c.code).toBe("invalid_argument");
      expect(c.message).toMatch(words);
    },
  );

  it.each([
    ["getUser", "id", () => ({ id: `${USER_ID}\0` })],
    [
      "registerUser",
      "email",
      () => ({ email: "a\0@example.com", password: "long enough password", displayName: "A" }),
    ],
    [
      "registerUser",
      "display_name",
      () => ({ email: "a@example.com", password: "long enough password", displayName: "A\0" }),
    ],
  ] as const)("refuses a NUL character in %s's %s, naming the field", async (method, field, request) => {
    const client = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    const before = entered.length;
    const err = await (client[method] as (r: unknown) => Promise<unknown>)(request()).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toBe(`${field}: must not contain a NUL character (\\0)`);
    expect(entered.length).toBe(before);
  });

  it("logs no bad input as an unhandled error", () => {
    expect(lines.filter((l) => l.msg === "unhandled error")).toEqual([]);
  });
});
