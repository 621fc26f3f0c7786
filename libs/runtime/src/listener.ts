import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import {
  AddressConnections,
  type ConnectionLimits,
  DEFAULT_CONNECTION_LIMITS,
  guardSession,
  refuseConnection,
} from "./connection-limits.js";
import { adoptStreamTable } from "./stream-table.js";

/** A request handler that serves both node:http and node:http2 (compat API) requests. */
export type NodeRequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/**
 * Takes an HTTP/2 stream before the compat request/response objects exist; returns false to
 * leave it to `handler`. For fast paths that need none of the compat layer.
 */
export type Http2StreamHandler = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
) => boolean;

export interface ListenerOptions {
  handler: NodeRequestHandler;
  /** Offered every HTTP/2 stream first. */
  streamHandler?: Http2StreamHandler;
  /** Largest request header block accepted, in bytes (both protocols). Default 16 KiB. */
  maxHeaderSize?: number;
  /** Idle HTTP/1.1 keep-alive connections are closed after this many ms. Default 5000. */
  keepAliveTimeoutMs?: number;
  /**
   * Streams per connection, header and idle timeouts, connections per client address; each
   * unset one takes its {@link DEFAULT_CONNECTION_LIMITS} value.
   */
  limits?: Partial<ConnectionLimits>;
  /**
   * PEM certificate and key: the port then speaks TLS, with ALPN choosing `h2` or `http/1.1`
   * (instead of sniffing cleartext).
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

/** One TCP port speaking HTTP/1.1 and HTTP/2 side by side (cleartext by sniffing, or TLS + ALPN). */
export interface Listener {
  /** Binds; resolves with the port actually bound (useful with port 0). */
  listen(port: number, host: string): Promise<number>;
  /** Number of requests being served right now, on either protocol. */
  readonly inFlight: number;
  /**
   * Stops accepting connections and asks every client to go away: HTTP/2 sessions get GOAWAY
   * (streams already open continue); HTTP/1.1 connections are closed after their next response. Resolves when no request is in flight, or after
   * `graceMs`, when every remaining connection is destroyed.
   */
  close(graceMs: number): Promise<void>;
}

// The HTTP/2 connection preface starts with "PRI"; no HTTP/1.1 method does.
const PREFACE_HEAD = Buffer.from("PRI", "latin1");

/**
 * Creates a listener that sniffs the first bytes of each connection and hands it to an HTTP/2
 * or an HTTP/1.1 server. `http2.createServer` without TLS speaks only HTTP/2 (its `allowHTTP1`
 * needs ALPN), so this is how one port serves gRPC (h2c), Connect and gRPC-Web over both, and
 * plain HTTP/1.1 endpoints such as `/metrics`.
 */
export function createListener(options: ListenerOptions): Listener {
  let inFlight = 0;
  let draining = false;
  let idleWaiters: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  const maxHeaderSize = options.maxHeaderSize ?? 16 * 1024;
  const limits: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };

  const begin = () => {
    inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      inFlight--;
      if (inFlight === 0) {
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const w of waiters) w();
      }
    };
  };

  const track: NodeRequestHandler = (req, res) => {
    const finish = begin();
    res.once("close", finish);
    res.once("finish", finish);
    if (draining && "shouldKeepAlive" in res) {
      // An HTTP/1.1 request that arrived on a kept-alive connection while draining: serve it,
      // then close the connection.
      res.setHeader("connection", "close");
    }
    options.handler(req, res);
  };

  const h1 = createHttp1Server(options, limits, maxHeaderSize, track);
  const h2 = createHttp2Server(options, limits, maxHeaderSize, track);
  if (options.streamHandler) takeFastStreams(h2, options.streamHandler, begin);
  trackSessions(h2, sessions, limits, () => draining);
  const accept = connectionAdmission(limits.maxConnectionsPerAddress, sockets);
  if (options.tls) {
    // Over the limit, a TLS connection is cut before its handshake costs anything.
    h2.prependListener("connection", (socket: net.Socket) => {
      if (!accept(socket)) socket.destroy();
    });
  }
  const server: net.Server = options.tls ? h2 : createSniffingServer(h1, h2, accept, limits.headersTimeoutMs);

  return {
    get inFlight() {
      return inFlight;
    },
    listen: (port, host) => listenOn(server, port, host),
    async close(graceMs) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // HTTP/2 clients get GOAWAY and open new streams elsewhere. Idle HTTP/1.1 connections stay
      // up: a request racing onto one gets a clean UNAVAILABLE (the runtime is NOT_SERVING) and
      // `connection: close`, rather than a reset socket.
      for (const s of sessions) s.close();
      const deadline = Date.now() + graceMs;
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          idleWaiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      await closedSessions(sessions, deadline - Date.now());
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      // Stops `h1`'s timeout checks (it was never listening: the error says so, and is moot).
      h1.close(() => {});
      await closed;
    },
  };
}

/** Keeps the set of open HTTP/2 sessions, each guarded; one that opens while draining is closed. */
function trackSessions(
  h2: http2.Http2Server | http2.Http2SecureServer,
  sessions: Set<http2.Http2Session>,
  limits: ConnectionLimits,
  draining: () => boolean,
): void {
  h2.on("session", (session) => {
    // Before any stream: keeps finished streams from being promoted by young-generation GCs.
    adoptStreamTable(session);
    guardSession(session, limits);
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (draining()) session.close();
  });
}

/**
 * Tracks a connection in `sockets`; false when its address is at its limit (the caller refuses
 * it). Its address's count drops when it closes.
 */
function connectionAdmission(maxPerAddress: number, sockets: Set<net.Socket>) {
  const perAddress = new AddressConnections(maxPerAddress);
  return (socket: net.Socket): boolean => {
    const address = socket.remoteAddress ?? "unknown";
    if (!perAddress.take(address)) return false;
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      perAddress.release(address);
    });
    return true;
  };
}

/** The timeouts of HTTP/1.1 requests, on `h1` and on the TLS server that also takes HTTP/1.1. */
function http1Timeouts(limits: ConnectionLimits) {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: Math.max(300_000, limits.headersTimeoutMs + 1),
    // Node checks the header timeout only every `connectionsCheckingInterval` (30 s by
    // default): check often enough that the timeout means what it says.
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, limits.headersTimeoutMs / 4)),
  };
}

/** The HTTP/1.1 server the sniffing server hands plain connections to (it never listens itself). */
function createHttp1Server(
  options: ListenerOptions,
  limits: ConnectionLimits,
  maxHeaderSize: number,
  track: NodeRequestHandler,
): http.Server {
  const h1 = http.createServer(
    { maxHeaderSize, keepAliveTimeout: options.keepAliveTimeoutMs ?? 5000, ...http1Timeouts(limits) },
    track,
  );
  // `h1` never listens (connections are handed to it), and Node starts the checks of its header
  // and request timeouts on "listening": start them.
  h1.emit("listening");
  h1.on("clientError", answerClientError);
  return h1;
}

/**
 * The HTTP/2 server. With TLS, one secure server takes both protocols (HTTP/1.1 requests reach
 * `track` as node:http objects); without, the sniffing TCP server hands each connection to it
 * or to the HTTP/1.1 server.
 */
function createHttp2Server(
  options: ListenerOptions,
  limits: ConnectionLimits,
  maxHeaderSize: number,
  track: NodeRequestHandler,
): http2.Http2Server | http2.Http2SecureServer {
  const h2Options = {
    maxSessionMemory: 64,
    settings: { maxHeaderListSize: maxHeaderSize, maxConcurrentStreams: limits.maxConcurrentStreams },
  };
  if (!options.tls) {
    const h2 = http2.createServer(h2Options, track);
    // A malformed or abusive HTTP/2 peer must not take the process down.
    h2.on("sessionError", () => {});
    return h2;
  }
  const h2 = http2.createSecureServer(
    {
      ...h2Options,
      ...options.tls,
      allowHTTP1: true,
      ALPNProtocols: ["h2", "http/1.1"],
      // A TLS connection that does not finish its handshake is closed within the header timeout.
      handshakeTimeout: limits.headersTimeoutMs,
    },
    track,
  );
  // HTTP/1.1 over TLS is served by the secure server itself (allowHTTP1), with Node's own
  // header timeout (60 s, checked every 30 s) unless set here: the same limits as `h1`.
  Object.assign(h2, http1Timeouts(limits));
  h2.on("sessionError", () => {});
  // HTTP/1.1 over TLS: the secure server's own (its default answer leaves the connection to linger).
  h2.on("clientError", answerClientError);
  // A handshake that failed or did not finish in time (handshakeTimeout): Node reports it, and
  // leaves the connection open unless told.
  h2.on("tlsClientError", (_err: Error, socket: net.Socket) => socket.destroy());
  return h2;
}

/**
 * Node's own compat dispatcher (it builds Http2ServerRequest/Response, answers CONNECT and
 * `expect`) stays, but runs only for the streams the fast path declines.
 */
function takeFastStreams(
  h2: http2.Http2Server | http2.Http2SecureServer,
  streamHandler: Http2StreamHandler,
  begin: () => () => void,
): void {
  const compat = h2.listeners("stream")[0] as (...args: unknown[]) => void;
  h2.removeListener("stream", compat);
  h2.on(
    "stream",
    (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
      if (streamHandler(stream, headers)) {
        stream.once("close", begin());
      } else {
        compat(stream, headers, ...rest);
      }
    },
  );
}

/** A bad HTTP/1.1 request gets its status and `connection: close`; a reset connection is dropped. */
function answerClientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
  if (socket.writable && err.code !== "ECONNRESET") {
    const status =
      err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
    );
  } else {
    socket.destroy();
  }
}

/**
 * The TCP server of a listener without TLS: reads each connection's first bytes and hands it to
 * `h2` (the HTTP/2 preface) or `h1`; refuses it there when `accept` said its address is full.
 */
function createSniffingServer(
  h1: http.Server,
  h2: http2.Http2Server | http2.Http2SecureServer,
  accept: (socket: net.Socket) => boolean,
  headersTimeoutMs: number,
): net.Server {
  return net.createServer((socket) => {
    const admitted = accept(socket);
    socket.setNoDelay(true);
    socket.on("error", () => socket.destroy());
    // Until its first bytes tell the protocol, a connection has the header timeout to send them.
    const silent = () => socket.destroy();
    socket.setTimeout(headersTimeoutMs, silent);
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      if (head.length < PREFACE_HEAD.length && head.equals(PREFACE_HEAD.subarray(0, head.length))) {
        return; // could still be HTTP/2: wait for more bytes
      }
      socket.off("data", onData);
      socket.setTimeout(0);
      socket.off("timeout", silent);
      const isH2 = head.subarray(0, PREFACE_HEAD.length).equals(PREFACE_HEAD);
      if (!admitted) {
        refuseConnection(socket, isH2);
        return;
      }
      socket.pause();
      socket.unshift(head);
      if (isH2) {
        // The HTTP/2 session reads the bytes already buffered on the socket, then the handle.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });
}

function listenOn(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const addr = server.address();
      resolve(typeof addr === "object" && addr ? addr.port : port);
    });
  });
}

/**
 * A call that just ended may still have its last frames (trailers) queued in its session: closed
 * sessions end by themselves once those are written, so wait for that (within `leftMs`, at most
 * a second) before cutting what remains, or the client sees its stream reset.
 */
async function closedSessions(sessions: Set<http2.Http2Session>, leftMs: number): Promise<void> {
  const open = [...sessions].filter((s) => !s.destroyed);
  if (open.length === 0 || leftMs <= 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(open.map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.once("close", r))))),
    new Promise<void>((r) => {
      timer = setTimeout(r, Math.min(leftMs, 1_000));
    }),
  ]);
  clearTimeout(timer);
}
