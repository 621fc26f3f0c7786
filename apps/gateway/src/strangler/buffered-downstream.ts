import type http2 from "node:http2";
import { Readable } from "node:stream";
import type { Downstream } from "../proxy/downstream.js";

/** The answer a {@link BufferedDownstream} collected. */
export interface BufferedAnswer {
  status: number;
  headers: http2.OutgoingHttpHeaders;
  body: Buffer;
  /** The proxy reset the call mid-answer (the upstream failed while answering). */
  reset: boolean;
}

/**
 * A call the gateway makes to itself: a whole request body in, the whole answer collected. The
 * transcoder hands one to the proxy, so a transcoded REST call gets everything a gRPC call gets
 * (authentication, the method's policy, rate limits, deadline, retries, balancing, tracing).
 */
export class BufferedDownstream implements Downstream {
  readonly h2 = false;
  readonly wantsTrailers = false;
  readonly body: Readable;
  readonly answer: Promise<BufferedAnswer>;
  #status = 0;
  #headers: http2.OutgoingHttpHeaders = {};
  readonly #chunks: Buffer[] = [];
  #resolve!: (a: BufferedAnswer) => void;
  #sent = false;

  constructor(
    readonly headers: http2.IncomingHttpHeaders,
    body: Uint8Array,
    readonly remoteAddress: string,
  ) {
    this.body = new Readable({ read() {} });
    if (body.length > 0) this.body.push(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    this.body.push(null);
    this.answer = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  get headersSent(): boolean {
    return this.#sent;
  }

  respond(status: number, headers: http2.OutgoingHttpHeaders, end: boolean): void {
    this.#sent = true;
    this.#status = status;
    this.#headers = headers;
    if (end) this.#done(false);
  }

  write(chunk: Buffer): boolean {
    this.#chunks.push(chunk);
    return true;
  }

  /** Everything written is collected at once: the gateway's own call never lags. */
  readonly backlog = 0;

  onDrain(): void {}

  onFlushed(fn: () => void): void {
    fn();
  }

  finish(): void {
    this.#done(false);
  }

  reset(): void {
    this.#done(true);
  }

  onGone(): void {
    // Nobody hangs up on the gateway's own calls.
  }

  #done(reset: boolean): void {
    this.#resolve({ status: this.#status, headers: this.#headers, body: Buffer.concat(this.#chunks), reset });
  }
}
