import http2 from "node:http2";
import net from "node:net";
import { waitFor } from "@meshwork/testing";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionLimits } from "./connection-limits.js";
import { createListener, type Listener } from "./listener.js";
import { connectRawH2 } from "./raw-h2.js";

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_PROTOCOL_ERROR } = http2.constants;

/** A listener whose `/hold` calls are never answered and whose other calls answer at once. */
async function start(limits: Partial<ConnectionLimits>) {
  const held = new Set<unknown>();
  const listener = createListener({
    limits,
    handler(req, res) {
      if (req.url === "/hold") {
        held.add(res);
        res.once("close", () => held.delete(res));
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok");
    },
  });
  const port = await listener.listen(0, "127.0.0.1");
  return { listener, port, held };
}

/** A GET over HTTP/2 from a fresh connection; its status. */
async function h2Get(port: number, path = "/"): Promise<number> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  try {
    return await new Promise<number>((resolve, reject) => {
      const s = session.request({ ":path": path });
      s.on("response", (h) => resolve(Number(h[":status"])));
      s.on("error", reject);
      s.resume();
    });
  } finally {
    session.close();
  }
}

/** Raw bytes to the port from `localAddress`; resolves with what came back once the server closed. */
function rawTcp(port: number, bytes: string, localAddress = "127.0.0.1"): { closed: Promise<string> } {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  socket.on("error", () => {});
  if (bytes) socket.write(bytes);
  let got = "";
  socket.setEncoding("latin1");
  socket.on("data", (c: string) => {
    got += c;
  });
  return { closed: new Promise((resolve) => socket.on("close", () => resolve(got))) };
}

const GET_HOLD = { ":method": "GET", ":path": "/hold", ":scheme": "http", ":authority": "x" };

describe("listener limits (issue 25.2)", () => {
  let listener: Listener | undefined;
  afterEach(async () => {
    await listener?.close(0);
    listener = undefined;
  });

  it("announces its stream limit and cuts a connection that opens streams past it, while others are served", async () => {
    const s = await start({ maxConcurrentStreams: 10 });
    listener = s.listener;
    const attacker = await connectRawH2(s.port);
    let most = 0;
    try {
      attacker.preface();
      await waitFor(() => attacker.settings.size > 0, { what: "the server's SETTINGS" });
      expect(attacker.settings.get(3)).toBe(10); // SETTINGS_MAX_CONCURRENT_STREAMS
      for (let i = 0; i < 50; i++) attacker.headers(1 + 2 * i, GET_HOLD, false);
      // A peer that opens streams past the limit it acknowledged breaks the protocol: Node ends
      // the whole connection (GOAWAY naming the 10th stream as the last one processed), so its
      // held streams are let go too.
      await waitFor(
        () => {
          most = Math.max(most, s.held.size);
          return attacker.closed;
        },
        { what: "the connection cut", intervalMs: 1 },
      );
      expect(attacker.goaway?.lastStreamId).toBe(19);
      expect([NGHTTP2_PROTOCOL_ERROR, NGHTTP2_INTERNAL_ERROR]).toContain(attacker.goaway?.code);
      expect(most).toBeLessThanOrEqual(10);
      await waitFor(() => s.held.size === 0, { what: "its streams let go" });
      expect(await h2Get(s.port)).toBe(200);
    } finally {
      attacker.close();
    }
  });

  it("closes a connection that sends only the HTTP/2 preface, or half a header block, after the header timeout", async () => {
    const s = await start({ headersTimeoutMs: 300 });
    listener = s.listener;
    const prefaceOnly = await connectRawH2(s.port);
    const halfHeaders = await connectRawH2(s.port);
    const started = Date.now();
    prefaceOnly.preface();
    halfHeaders.preface();
    halfHeaders.halfHeaders(1, GET_HOLD);
    await waitFor(() => prefaceOnly.closed && halfHeaders.closed, { what: "both closed" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(prefaceOnly.goaway?.code).toBe(0);
    expect(await h2Get(s.port)).toBe(200);
  });

  it("closes a connection that sends nothing, and one with half its HTTP/1.1 headers (408), after the header timeout", async () => {
    const s = await start({ headersTimeoutMs: 300 });
    listener = s.listener;
    const started = Date.now();
    const silent = rawTcp(s.port, "");
    const half = rawTcp(s.port, "POST /x HTTP/1.1\r\nhost: a\r\nx-slow: ");
    expect(await half.closed).toMatch(/^HTTP\/1\.1 408 /);
    expect(await silent.closed).toBe("");
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await fetch(`http://127.0.0.1:${s.port}/`)).status).toBe(200);
  });

  it("closes an HTTP/2 connection idle (no stream open) for the idle timeout, not one with a stream open", async () => {
    const s = await start({ idleTimeoutMs: 300, headersTimeoutMs: 5_000 });
    listener = s.listener;
    const idle = await connectRawH2(s.port);
    const busy = await connectRawH2(s.port);
    idle.preface();
    busy.preface();
    idle.headers(1, { ...GET_HOLD, ":path": "/" }, true); // answered at once: then idle
    busy.headers(1, GET_HOLD, false); // held open
    await waitFor(() => idle.closed, { what: "the idle connection closed" });
    expect(idle.headersOn.has(1)).toBe(true);
    expect(idle.goaway?.code).toBe(0);
    expect(busy.closed).toBe(false);
    busy.close();
  });

  it("refuses connections past the per-address limit in their protocol, other addresses unaffected", async () => {
    const s = await start({ maxConnectionsPerAddress: 2 });
    listener = s.listener;
    const held = [await connectRawH2(s.port, "127.0.0.2"), await connectRawH2(s.port, "127.0.0.2")];
    for (const c of held) c.preface();
    await waitFor(() => held.every((c) => c.settings.size > 0), { what: "two admitted" });
    const third = await connectRawH2(s.port, "127.0.0.2");
    third.preface();
    await waitFor(() => third.closed, { what: "the third refused" });
    expect(third.goaway).toMatchObject({
      code: NGHTTP2_ENHANCE_YOUR_CALM,
      debug: "too many connections from this address",
    });
    expect(await rawTcp(s.port, "GET / HTTP/1.1\r\nhost: a\r\n\r\n", "127.0.0.2").closed).toMatch(
      /^HTTP\/1\.1 429 Too Many Requests/,
    );
    // Another address is served; and once one connection closes, the address may connect again.
    expect(await h2Get(s.port)).toBe(200);
    held[0]?.close();
    const again = await waitFor(
      async () => {
        const c = await connectRawH2(s.port, "127.0.0.2");
        c.preface();
        await waitFor(() => c.settings.size > 0 || c.closed, { what: "an answer" });
        if (c.goaway === undefined && !c.closed) return c;
        c.close();
        return undefined; // the server has not seen the first close yet
      },
      { what: "admitted again" },
    );
    again.close();
    held[1]?.close();
  });
});
