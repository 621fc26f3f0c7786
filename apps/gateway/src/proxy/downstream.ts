import type http2 from "node:http2";
import type { Readable } from "node:stream";

/** The client side of one proxied call, over HTTP/2 or HTTP/1.1. */
export interface Downstream {
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Readable;
  readonly h2: boolean;
  readonly remoteAddress: string;
  /** Starts the response; with `trailers`, `finish` later sends them (HTTP/2 only). */
  respond(status: number, headers: http2.OutgoingHttpHeaders, end: boolean, trailers: boolean): void;
  write(chunk: Buffer): boolean;
  /**
   * Answer bytes written that the client has not taken yet: queued in the gateway, beyond what
   * the client's flow-control window (HTTP/2) or the socket has taken.
   */
  readonly backlog: number;
  onDrain(fn: () => void): void;
  /**
   * Ends the answer; `trailers` end it when it was started with trailers (gRPC over HTTP/2), and
   * are ignored otherwise. Only the first call counts.
   */
  finish(trailers: http2.OutgoingHttpHeaders): void;
  /** Calls `fn` once, when everything written (and the end) has been taken, or the client is gone. */
  onFlushed(fn: () => void): void;
  /**
   * Ends it abruptly, dropping what the client has not taken: the upstream failed mid-response
   * (HTTP/2: RST_STREAM INTERNAL_ERROR), or `code` (HTTP/2 only; HTTP/1.1 closes the connection).
   */
  reset(code?: number): void;
  /**
   * After a complete answer, asks the client to stop sending the rest of its request (HTTP/2:
   * RST_STREAM NO_ERROR, RFC 9113 section 8.1). Absent: the rest is read and dropped.
   */
  stopBody?(): void;
  /** The response was started to end with trailers (gRPC over HTTP/2). */
  readonly wantsTrailers: boolean;
  onGone(fn: () => void): void;
  readonly headersSent: boolean;
}
