import http2 from "node:http2";
import type net from "node:net";

/**
 * What one client may hold on a listener, so that a single client cannot take a process down or
 * starve the others (issue 25.2): a client holding 20,000 streams on one connection grew the
 * gateway to ~890 MB, and connections that never finish their headers were never closed.
 */
export interface ConnectionLimits {
  /**
   * HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open at once. A
   * client that opens more has them refused (RST_STREAM; Node ends the session with
   * ENHANCE_YOUR_CALM after 100 refused streams).
   */
  maxConcurrentStreams: number;
  /**
   * A connection must have sent its first request's headers within this many ms (HTTP/1.1: each
   * request's header block, answered 408; HTTP/2: the preface and a complete HEADERS frame;
   * either: the first bytes), or it is closed. Half-sent headers hold nothing longer.
   */
  headersTimeoutMs: number;
  /**
   * An HTTP/2 connection with no stream open for this many ms is closed (GOAWAY). Idle HTTP/1.1
   * keep-alive connections are closed after `keepAliveTimeoutMs` of the listener.
   */
  idleTimeoutMs: number;
  /**
   * Connections one client address may have open at once; more are refused as soon as their
   * protocol is known (HTTP/1.1 `429`, HTTP/2 GOAWAY ENHANCE_YOUR_CALM). Infinity: no limit.
   */
  maxConnectionsPerAddress: number;
}

/**
 * The runtime's defaults: a service sits behind the gateway, whose connection pool opens
 * another connection when one is full, so a generous per-connection limit; no per-address limit
 * (every caller of a service is a few gateways and services, from few addresses).
 */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConcurrentStreams: 1000,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  maxConnectionsPerAddress: Number.POSITIVE_INFINITY,
};

/** How long a closing HTTP/2 session gets to flush its GOAWAY before it is destroyed. */
const CLOSE_GRACE_MS = 1_000;

/** Closes a session politely, then for good (a peer that does not read must not hold it). */
function expire(session: http2.Http2Session): void {
  if (session.closed || session.destroyed) return;
  session.close();
  setTimeout(() => session.destroy(), CLOSE_GRACE_MS).unref();
}

/**
 * Watches an HTTP/2 session: closed when it has not opened a stream within `headersTimeoutMs`
 * of its start (a preface alone, or half a header block), or when it has had no stream open for
 * `idleTimeoutMs`.
 */
export function guardSession(session: http2.Http2Session, limits: ConnectionLimits): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined = setTimeout(() => expire(session), limits.headersTimeoutMs).unref();
  const idle = () => {
    open--;
    if (open > 0 || session.closed || session.destroyed) return;
    timer = setTimeout(() => expire(session), limits.idleTimeoutMs).unref();
  };
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open++;
    if (timer) clearTimeout(timer);
    timer = undefined;
    stream.once("close", idle);
  });
  session.once("close", () => {
    if (timer) clearTimeout(timer);
  });
}

// A server preface (an empty SETTINGS frame) then GOAWAY(last stream 0, ENHANCE_YOUR_CALM).
const GOAWAY_CALM = (() => {
  const debug = Buffer.from("too many connections from this address", "latin1");
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  const goaway = Buffer.alloc(9 + 8 + debug.length);
  goaway.writeUIntBE(8 + debug.length, 0, 3);
  goaway[3] = 7; // GOAWAY
  goaway.writeUInt32BE(0, 9); // last stream id
  goaway.writeUInt32BE(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 13);
  debug.copy(goaway, 17);
  return Buffer.concat([settings, goaway]);
})();

const TOO_MANY_H1 = Buffer.from(
  "HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 38\r\n\r\ntoo many connections from this address",
  "latin1",
);

/** Refuses a connection over its address's limit, in its protocol; `h2` when it began with the preface. */
export function refuseConnection(socket: net.Socket, h2: boolean): void {
  socket.end(h2 ? GOAWAY_CALM : TOO_MANY_H1);
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

/** Open connections per client address, against a limit. */
export class AddressConnections {
  readonly #open = new Map<string, number>();

  constructor(readonly limit: number) {}

  /** Counts a connection from `address`; false (not counted) when the address is at its limit. */
  take(address: string): boolean {
    const n = this.#open.get(address) ?? 0;
    if (n >= this.limit) return false;
    this.#open.set(address, n + 1);
    return true;
  }

  release(address: string): void {
    const n = (this.#open.get(address) ?? 1) - 1;
    if (n <= 0) this.#open.delete(address);
    else this.#open.set(address, n);
  }

  /** Connections open from `address` now. */
  count(address: string): number {
    return this.#open.get(address) ?? 0;
  }
}
