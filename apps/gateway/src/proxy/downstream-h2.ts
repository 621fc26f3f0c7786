import http2 from "node:http2";
import type { Readable, Writable } from "node:stream";
import type { Downstream } from "./downstream.js";

function ignore() {
  // Stream errors end in "close", which the proxy handles.
}

/** Calls `fn` once `stream` has handed on everything written and its end, or is gone. */
export function onceFlushed(stream: Writable, fn: () => void): void {
  if (stream.writableFinished || stream.destroyed) {
    fn();
    return;
  }
  let called = false;
  const once = () => {
    if (called) return;
    called = true;
    fn();
  };
  stream.once("finish", once);
  stream.once("close", once);
}

/**
 * Each client connection's address, read once: `session.socket` is a Proxy whose every property
 * read goes through its traps (1.2% of the gateway's busy time in the bench, read per call).
 */
const addresses = new WeakMap<http2.Http2Session, string>();

function remoteAddressOf(stream: http2.ServerHttp2Stream): string {
  const session = stream.session;
  if (!session) return "unknown";
  let address = addresses.get(session);
  if (address === undefined) {
    address = session.socket?.remoteAddress;
    if (address === undefined) return "unknown";
    addresses.set(session, address);
  }
  return address;
}

/** Where a client's stream keeps its downstream, for the listeners every stream shares. */
const DOWNSTREAM = Symbol("downstream");

type DownstreamStream = http2.ServerHttp2Stream & { [DOWNSTREAM]: H2Downstream };

/** The client side over HTTP/2: one object per call, its methods shared. */
export class H2Downstream implements Downstream {
  readonly h2 = true;
  readonly body: Readable;
  readonly remoteAddress: string;
  #wantsTrailers = false;
  /** What {@link finish} sends once Node asks for the trailers. */
  #trailers: http2.OutgoingHttpHeaders | undefined;
  /** Told once when the client leaves before its answer ended (see {@link onGone}). */
  #gone: (() => void) | undefined;

  constructor(
    readonly stream: http2.ServerHttp2Stream,
    readonly headers: http2.IncomingHttpHeaders,
  ) {
    this.body = stream;
    this.remoteAddress = remoteAddressOf(stream);
    stream.on("error", ignore);
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  get wantsTrailers(): boolean {
    return this.#wantsTrailers;
  }

  respond(status: number, h: http2.OutgoingHttpHeaders, end: boolean, trailers: boolean): void {
    const stream = this.stream;
    if (stream.destroyed) return;
    this.#wantsTrailers = trailers;
    h[":status"] = status;
    stream.respond(h, { endStream: end, waitForTrailers: trailers });
  }

  write(chunk: Buffer): boolean {
    // A stream the client reset takes nothing more: "no room" holds the upstream back until
    // its "close" ends the call as client_gone (it would otherwise be drained for nothing).
    if (this.stream.destroyed) return false;
    return this.stream.write(chunk);
  }

  get backlog(): number {
    const stream = this.stream;
    // A Node HTTP/2 write completes when nghttp2 has framed its bytes (within the window), so
    // the writable side's length is what the client has not taken.
    return stream.destroyed ? 0 : stream.writableLength;
  }

  onDrain(fn: () => void): void {
    this.stream.once("drain", fn);
  }

  onFlushed(fn: () => void): void {
    onceFlushed(this.stream, fn);
  }

  finish(trailers: http2.OutgoingHttpHeaders): void {
    const stream = this.stream;
    if (stream.destroyed || stream.writableEnded) return;
    if (this.#wantsTrailers) {
      // Node asks for them after the last DATA frame, which only this end() lets go: the
      // trailers are known by then, so there is no answer without them (no fallback status).
      // `on`: it comes once per stream (`once` would add a wrapper closure per call); the
      // listener is shared by every stream (no closure per call).
      this.#trailers = trailers;
      (stream as DownstreamStream)[DOWNSTREAM] = this;
      stream.on("wantTrailers", H2Downstream.#wantTrailersListener);
    }
    stream.end();
  }

  static readonly #wantTrailersListener = function (this: DownstreamStream): void {
    try {
      this.sendTrailers(this[DOWNSTREAM].#trailers ?? {});
    } catch {
      this.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  };

  reset(code: number = http2.constants.NGHTTP2_INTERNAL_ERROR): void {
    this.stream.close(code);
  }

  stopBody(): void {
    if (!this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }

  onGone(fn: () => void): void {
    const stream = this.stream;
    this.#gone = fn;
    (stream as DownstreamStream)[DOWNSTREAM] = this;
    // "aborted": the client reset the stream before its answer ended (emitted at once, where
    // "close" may come later, after writes still queued on the stream are given up).
    // `on`: each comes at most once, and #tellGone guards the rest (no wrapper closures per call,
    // and the listeners are shared by every stream).
    stream.on("aborted", H2Downstream.#abortedListener);
    stream.on("close", H2Downstream.#closeListener);
  }

  static readonly #abortedListener = function (this: DownstreamStream): void {
    this[DOWNSTREAM].#tellGone();
  };

  static readonly #closeListener = function (this: DownstreamStream): void {
    if (!this.writableFinished) this[DOWNSTREAM].#tellGone();
  };

  /** Tells {@link onGone}'s function, once. */
  #tellGone(): void {
    const fn = this.#gone;
    if (!fn) return;
    this.#gone = undefined;
    fn();
  }
}
