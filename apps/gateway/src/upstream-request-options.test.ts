import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UPSTREAM_REQUEST_OPTIONS } from "./upstreams.js";

let server: http2.Http2Server;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  server = http2.createServer();
  // Echoes how many request bytes came, once the request ended.
  server.on("stream", (stream) => {
    let bytes = 0;
    stream.on("data", (c: Buffer) => {
      bytes += c.length;
    });
    stream.on("end", () => {
      stream.respond({ ":status": 200 });
      stream.end(String(bytes));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});

afterAll(async () => {
  session.close();
  await new Promise((r) => server.close(r));
});

function answerOf(stream: http2.ClientHttp2Stream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    stream.setEncoding("utf8");
    stream.on("data", (c: string) => {
      text += c;
    });
    stream.on("end", () => resolve(text));
    stream.on("error", reject);
  });
}

describe("UPSTREAM_REQUEST_OPTIONS", () => {
  it("give every priority field Node's request() would add, with Node's defaults", () => {
    const defaults = {
      weight: http2.constants.NGHTTP2_DEFAULT_WEIGHT,
      parent: 0,
      exclusive: false,
      silent: false,
    };
    expect(UPSTREAM_REQUEST_OPTIONS.body).toEqual({ endStream: false, ...defaults });
    expect(UPSTREAM_REQUEST_OPTIONS.bodyless).toEqual({ endStream: true, ...defaults });
  });

  it("are read-only to the code that shares them (tsc: a field set for one call would go on all)", () => {
    // Never called: tsc refuses these assignments (and this file, were they allowed).
    const setForOneCall = () => {
      // @ts-expect-error shared by every upstream stream
      UPSTREAM_REQUEST_OPTIONS.body.endStream = true;
      // @ts-expect-error shared by every upstream stream
      UPSTREAM_REQUEST_OPTIONS.bodyless.waitForTrailers = true;
    };
    expect(typeof setForOneCall).toBe("function");
  });

  it("open streams as Node's defaults do: a body follows, or the stream ends with its headers", async () => {
    const headers = { ":method": "POST", ":path": "/x" };
    const withBody = session.request(headers, UPSTREAM_REQUEST_OPTIONS.body);
    withBody.end(Buffer.alloc(5));
    expect(await answerOf(withBody)).toBe("5");
    const bodyless = session.request({ ...headers, ":method": "GET" }, UPSTREAM_REQUEST_OPTIONS.bodyless);
    expect(bodyless.writableEnded).toBe(true);
    expect(await answerOf(bodyless)).toBe("0");
    // Node copies them: the shared objects are as they were.
    expect(Object.keys(UPSTREAM_REQUEST_OPTIONS.body)).toHaveLength(5);
  });
});
