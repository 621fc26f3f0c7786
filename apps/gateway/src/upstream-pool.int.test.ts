import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Upstreams } from "./upstreams.js";

/** An HTTP/2 server that takes `max` streams per connection and answers each only when told. */
async function startHoldingServer(max: number) {
  const held: http2.ServerHttp2Stream[] = [];
  const server = http2.createServer({ settings: { maxConcurrentStreams: max } });
  server.on("stream", (stream) => {
    stream.on("error", () => {});
    held.push(stream);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, url, held };
}

describe("upstream connection pool (issue 25.2)", () => {
  let upstream: Awaited<ReturnType<typeof startHoldingServer>>;
  beforeAll(async () => {
    upstream = await startHoldingServer(10);
  });
  afterAll(async () => {
    for (const s of upstream.held) s.close();
    await new Promise<void>((r) => upstream.server.close(() => r()));
  });

  it("opens another connection when the streams on the open ones reach the peer's limit", async () => {
    const upstreams = new Upstreams({ svc: [upstream.url] }, undefined, { maxConnectionsPerEndpoint: 4 });
    const endpoint = upstreams.pick("svc") as NonNullable<ReturnType<Upstreams["pick"]>>;
    try {
      // Learn the peer's limit first (before its SETTINGS the HTTP/2 default of 100 is assumed).
      const first = upstreams.session(endpoint);
      await waitFor(() => first.remoteSettings.maxConcurrentStreams === 10, { what: "the peer's SETTINGS" });
      const streams: http2.ClientHttp2Stream[] = [];
      for (let i = 0; i < 35; i++) {
        const s = upstreams.request(
          endpoint,
          { ":path": `/${i}`, ":method": "POST" },
          { endStream: true },
        ) as http2.ClientHttp2Stream;
        s.on("error", () => {});
        streams.push(s);
      }
      // 35 streams with 10 a connection: 4 connections (the pool's cap), the last holding 5.
      expect(upstreams.connections(endpoint).sort((a, b) => b - a)).toEqual([10, 10, 10, 5]);
      // Every one of them reached the server: none waits behind a full connection.
      await waitFor(() => upstream.held.length === 35, { what: "35 streams at the server" });
      // Past the cap, a stream waits on the least loaded connection (not a 5th connection).
      const extra = upstreams.request(
        endpoint,
        { ":path": "/x", ":method": "POST" },
        { endStream: true },
      ) as http2.ClientHttp2Stream;
      extra.on("error", () => {});
      expect(upstreams.connections(endpoint).sort((a, b) => b - a)).toEqual([10, 10, 10, 6]);
      // Streams that end give their room back.
      for (const s of upstream.held.splice(0, 10)) {
        s.respond({ ":status": 200 });
        s.end();
      }
      await waitFor(() => upstreams.connections(endpoint).reduce((a, b) => a + b, 0) === 26, {
        what: "finished streams uncounted",
      });
    } finally {
      upstreams.close();
    }
  });
});
