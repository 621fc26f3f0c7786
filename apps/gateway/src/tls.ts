import type http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type { Http2StreamHandler, Listener, NodeRequestHandler } from "@meshwork/runtime";

export interface TlsListenerOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** Every HTTP/2 stream (ALPN `h2`). */
  streamHandler: Http2StreamHandler;
  /** Every HTTP/1.1 request (ALPN `http/1.1`, or a client without ALPN). */
  handler: NodeRequestHandler;
}

/**
 * The gateway's listener with TLS: ALPN offers `h2` and `http/1.1` on the one port, so gRPC
 * clients get HTTP/2 and curl or a browser may use either. Same contract as the cleartext
 * listener: GOAWAY to HTTP/2 clients on close, in-flight calls get `graceMs` to finish.
 */
export function createTlsListener(options: TlsListenerOptions): Listener {
  let inFlight = 0;
  let idle: Array<() => void> = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<net.Socket>();
  const done = () => {
    inFlight--;
    if (inFlight === 0) {
      for (const w of idle) w();
      idle = [];
    }
  };
  const server = http2.createSecureServer(
    { cert: options.cert, key: options.key, allowHTTP1: true, ALPNProtocols: ["h2", "http/1.1"] },
    (req, res) => {
      inFlight++;
      res.once("close", done);
      // With allowHTTP1, what reaches here is HTTP/1.1 (node:http objects at run time).
      options.handler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse);
    },
  );
  // Node answers HTTP/2 streams through its compat layer once a request handler exists; the
  // gateway takes the streams itself, so HTTP/1.1 is all that handler sees.
  const compat = server.listeners("stream")[0] as (...args: unknown[]) => void;
  server.removeListener("stream", compat);
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    inFlight++;
    stream.once("close", done);
    if (!options.streamHandler(stream, headers)) stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  });
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  server.on("secureConnection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("sessionError", () => {});
  server.on("tlsClientError", () => {});

  return {
    get inFlight() {
      return inFlight;
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const a = server.address();
          resolve(typeof a === "object" && a ? a.port : port);
        });
      });
    },
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close();
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, graceMs);
          idle.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
