import http2 from "node:http2";
import type { ClientMethodMetrics } from "@meshwork/telemetry";
import type { Span } from "@opentelemetry/api";
import { Code, grpcMessage } from "../errors.js";
import { type Endpoint, UPSTREAM_REQUEST_OPTIONS } from "../upstreams.js";
import { cutShort, endpointFailed, HeldAnswer, outcomeOf } from "./answer.js";
import { type Blame, blameOfRequestError, blameOfReset } from "./blame.js";
import type { ProxiedCall } from "./call.js";
import { answerHeaders, answerTrailers, isGrpcAnswer } from "./headers.js";
import { unavailableAnswer } from "./retry.js";
import { type AttemptFailure, attemptCode, connectErrorCode, endAttemptSpan } from "./tracing.js";

/**
 * - waiting: the request went upstream, no answer yet;
 * - held: a retryable call's answer, held back whole until its end (up to a limit) so that an
 *   UNAVAILABLE in its trailers, or an upstream that dies before its end, can still go elsewhere;
 * - streaming: the answer's headers went to the client, its bytes follow as they come (nothing
 *   can be retried any more);
 * - finished: settled, given up (retried or failed) or the call ended: later events change
 *   nothing, and the endpoint no longer counts it in flight.
 */
export type AttemptState = "waiting" | "held" | "streaming" | "finished";

const EMPTY: http2.IncomingHttpHeaders = Object.freeze({});

/** Where an upstream stream keeps its attempt, for the listeners every stream shares. */
const ATTEMPT = Symbol("attempt");

type AttemptStream = http2.ClientHttp2Stream & { [ATTEMPT]: UpstreamAttempt };

/** One try of a call on one upstream endpoint. Its state changes only in {@link #setState}. */
export class UpstreamAttempt {
  #state: AttemptState = "waiting";
  #stream: http2.ClientHttp2Stream | undefined;
  #held: HeldAnswer | undefined;
  /** The answer's headers as the upstream sent them, and as they go to the client. */
  #headers: http2.IncomingHttpHeaders = EMPTY;
  #out: http2.OutgoingHttpHeaders | undefined;
  #httpStatus = 0;
  #grpcStatus: string | undefined;
  /** A gRPC answer (not gRPC-Web): it must end with trailers. */
  #grpcAnswer = false;
  #trailers: http2.IncomingHttpHeaders | undefined;
  /** Why it ended without a whole answer, for its span. */
  #failure: AttemptFailure | undefined;
  /** The code in a Connect error answer's body (its first chunk), for its span and metrics. */
  #connectCode: Code | undefined;
  /** When it went upstream: its `rpc.client.duration` runs to its end (an answer's last byte). */
  readonly #started = performance.now();

  constructor(
    readonly call: ProxiedCall,
    readonly endpoint: Endpoint,
    /** The request body, kept whole for a retryable call; undefined when it streams. */
    readonly body: Buffer | undefined,
    /** Its CLIENT span (ended when it finishes), when the call's span records. */
    readonly span: Span | undefined,
    /** Its method's `rpc.client.*` recorders (each attempt is counted and timed). */
    readonly calls: ClientMethodMetrics | undefined,
  ) {
    endpoint.active++;
    endpoint.total++;
  }

  get state(): AttemptState {
    return this.#state;
  }

  #setState(next: AttemptState): void {
    if (this.#state === "finished") return;
    this.#state = next;
    if (next !== "finished") return;
    this.#held?.drop();
    this.endpoint.active--;
    const { span, calls } = this;
    if (!span && !calls) return;
    const protocol = this.call.protocol;
    const code = attemptCode(protocol, this.#grpcStatus, this.#httpStatus, this.#failure, this.#connectCode);
    calls?.record(code, (performance.now() - this.#started) / 1000);
    if (span) endAttemptSpan(span, protocol, code, this.#httpStatus, this.#failure);
  }

  /** Ends the attempt (idempotent): the endpoint no longer counts it, held bytes are let go. */
  finish(): void {
    this.#setState("finished");
  }

  /** Cancels the upstream stream (the call is answered otherwise, or the client left). */
  cancel(): void {
    if (this.#state !== "finished") this.#failure ??= { type: "cancelled", message: "the call ended first" };
    this.#stream?.close(http2.constants.NGHTTP2_CANCEL);
  }

  /** Opens the stream upstream and sends the request (whole, or as it comes from the client). */
  send(headers: http2.OutgoingHttpHeaders): void {
    const { call, endpoint } = this;
    const upstreams = call.shared.options.upstreams;
    // A Connect GET (or HEAD) carries its request in the query: the stream ends with its
    // headers, and Node's client ends it so by itself, so no body may be written after.
    const bodyless = call.method === "GET" || call.method === "HEAD";
    let up: http2.ClientHttp2Stream;
    try {
      const opened = upstreams.request(
        endpoint,
        headers,
        bodyless ? UPSTREAM_REQUEST_OPTIONS.bodyless : UPSTREAM_REQUEST_OPTIONS.body,
      );
      if ("tooLarge" in opened) {
        // Headers past what the endpoint said it takes would have the stream reset: the
        // client's doing, answered as the gateway answers headers over its own limit.
        this.finish();
        call.fail(
          Code.ResourceExhausted,
          `request headers of ${opened.size} bytes with the gateway's own exceed the upstream's limit of ${opened.limit}`,
          undefined,
          431,
        );
        return;
      }
      up = opened;
    } catch (err) {
      const blame = blameOfRequestError(err as NodeJS.ErrnoException);
      if (!blame.endpoint) {
        this.finish();
        call.fail(blame.code, blame.message, undefined, blame.httpStatus);
        return;
      }
      upstreams.failed(endpoint);
      this.#failure = { type: "connect", message: (err as Error).message };
      if (!this.#retry("connect"))
        call.fail(Code.Unavailable, `upstream ${endpoint.cluster} unavailable: ${(err as Error).message}`);
      return;
    }
    this.#stream = up;
    if (bodyless) call.down.body.resume();
    else if (this.body) up.end(this.body);
    else call.streamBody(up);
    // `on`, not `once`: each of these comes at most once per stream (and the handlers ignore a
    // finished attempt), and `once` wraps every listener in a closure of its own per call. The
    // listeners are shared by every stream: each finds its attempt on the stream (no closures
    // per call).
    (up as AttemptStream)[ATTEMPT] = this;
    up.on("response", UpstreamAttempt.#responseListener);
    up.on("trailers", UpstreamAttempt.#trailersListener);
    up.on("end", UpstreamAttempt.#endListener);
    up.on("error", UpstreamAttempt.#errorListener);
    up.on("close", UpstreamAttempt.#closeListener);
  }

  static readonly #responseListener = function (
    this: AttemptStream,
    h: http2.IncomingHttpHeaders,
    flags: number,
  ): void {
    this[ATTEMPT].#onResponse(this, h, flags);
  };

  static readonly #trailersListener = function (this: AttemptStream, t: http2.IncomingHttpHeaders): void {
    this[ATTEMPT].#onTrailers(t);
  };

  static readonly #endListener = function (this: AttemptStream): void {
    this[ATTEMPT].#onEnd();
  };

  static readonly #dataListener = function (this: AttemptStream, chunk: Buffer): void {
    this[ATTEMPT].#onData(chunk);
  };

  static readonly #errorListener = function (this: AttemptStream, err: NodeJS.ErrnoException): void {
    const attempt = this[ATTEMPT];
    attempt.#lost(`unavailable: ${err.code ?? err.message}`, attempt.#resetBlame(this));
  };

  static readonly #closeListener = function (this: AttemptStream): void {
    const attempt = this[ATTEMPT];
    attempt.#lost(`reset the stream (code ${this.rstCode})`, attempt.#resetBlame(this));
  };

  /** Whose fault the end of `up` is, when it ended in an error or a reset. */
  #resetBlame(up: http2.ClientHttp2Stream): Blame {
    const session = up.session;
    return blameOfReset(up.rstCode, session !== undefined && !session.destroyed && !session.closed);
  }

  #onResponse(up: http2.ClientHttp2Stream, h: http2.IncomingHttpHeaders, flags: number): void {
    if (this.#state === "finished") return;
    this.#headers = h;
    const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    this.#httpStatus = Number(h[":status"] ?? 502);
    if (typeof h["grpc-status"] === "string") this.#grpcStatus = h["grpc-status"];
    // A trailers-only UNAVAILABLE (draining, not ready) has forwarded nothing: retry it.
    if (endStream && this.#unavailable()) {
      this.call.shared.options.upstreams.failed(this.endpoint);
      if (this.#retry("unavailable")) return;
    }
    this.#out = answerHeaders(h, this.call.requestId);
    this.#grpcAnswer = isGrpcAnswer(h);
    if (endStream) {
      // A trailers-only gRPC answer carries its status in these headers: it must have one.
      this.#ensureStatus(this.#out);
      this.#forward(true);
      this.#settle();
      return;
    }
    if (this.body) {
      this.#held = new HeldAnswer(this.call.shared.held, this.call);
      this.#setState("held");
    } else {
      this.#forward(false);
    }
    up.on("data", UpstreamAttempt.#dataListener);
  }

  #onData(chunk: Buffer): void {
    // A Connect error answer names its code in its body (its HTTP status is ambiguous).
    if (this.#httpStatus !== 200 && this.#connectCode === undefined && this.call.protocol === "connect")
      this.#connectCode = connectErrorCode(chunk, this.#httpStatus);
    if (this.#state === "held") {
      // A large answer (or one past the gateway's total) is passed on as it comes: it can no
      // longer be retried.
      if (!(this.#held as HeldAnswer).add(chunk)) this.#forward(false);
    } else if (this.#state === "streaming") {
      this.call.passOn(chunk);
    }
  }

  #onTrailers(t: http2.IncomingHttpHeaders): void {
    this.#trailers = t;
    if (typeof t["grpc-status"] === "string") this.#grpcStatus = t["grpc-status"];
  }

  #onEnd(): void {
    if (this.#state === "finished") return;
    // A gRPC answer that ends without trailers was cut off (the upstream died mid-answer, its
    // connection closed under it): never pass it on as if complete.
    if (this.#grpcAnswer && this.#trailers === undefined) {
      this.#lost("ended the answer without trailers");
      return;
    }
    if (this.#state === "held") {
      // Nothing forwarded yet: an UNAVAILABLE in the trailers may still go elsewhere, and an
      // answer that is not whole (its stream closed early) is not passed on as if it were.
      if (this.#unavailable()) {
        this.call.shared.options.upstreams.failed(this.endpoint);
        if (this.#retry("unavailable")) return;
      }
      const held = this.#held as HeldAnswer;
      const incomplete = cutShort(this.#headers, held.chunks, held.bytes);
      if (incomplete) {
        this.#lost(incomplete);
        return;
      }
      this.#forward(false);
    }
    if (this.#state !== "streaming") return;
    const trailers = answerTrailers(this.#trailers);
    this.#ensureStatus(trailers);
    this.call.down.finish(trailers);
    this.#settle();
  }

  /**
   * A gRPC answer (HTTP 200) whose upstream sent no grpc-status would reach its client with no
   * status at all: it gets UNKNOWN and says why, what a gRPC client concludes of such an answer
   * itself (grpc-js: UNKNOWN; the gRPC status codes guide: "Error parsing returned status",
   * UNKNOWN), and is counted so. Other HTTP statuses are left to the client's HTTP-to-gRPC mapping.
   */
  #ensureStatus(out: http2.OutgoingHttpHeaders): void {
    if (!this.#grpcAnswer || this.#httpStatus !== 200 || out["grpc-status"] !== undefined) return;
    this.#grpcStatus = String(Code.Unknown);
    out["grpc-status"] = this.#grpcStatus;
    out["grpc-message"] = grpcMessage(
      `upstream ${this.endpoint.cluster} ended the answer without grpc-status`,
    );
  }

  /** The answer's headers go to the client, then whatever was held back (in one write). */
  #forward(endStream: boolean): void {
    this.#setState("streaming");
    const call = this.call;
    const trailers = this.#grpcAnswer && !endStream && call.down.h2;
    call.respond(this.#httpStatus, this.#out ?? {}, endStream, trailers);
    const held = this.#held?.take();
    if (held) call.passOn(held);
  }

  /**
   * The stream failed (error, reset, or an answer cut short): retried, or the call fails. Only a
   * failure that is the endpoint's counts against it; one the request caused is answered as the
   * client's error and not retried.
   */
  #lost(reason: string, blame: Blame = { endpoint: true }): void {
    if (this.#state === "finished") return;
    const { call, endpoint } = this;
    this.#failure = { type: "lost", message: reason };
    if (!blame.endpoint) {
      this.finish();
      call.fail(blame.code, blame.message, undefined, blame.httpStatus);
      return;
    }
    call.shared.options.upstreams.failed(endpoint);
    if (this.#state === "streaming") {
      // Reset mid-answer: nothing can be retried any more.
      this.finish();
      call.fail(Code.Unavailable, `upstream ${endpoint.cluster} ${reason}`);
      return;
    }
    if (!this.#retry(reason)) call.fail(Code.Unavailable, `upstream ${endpoint.cluster} ${reason}`);
  }

  /** Gives this attempt up for another (true), or leaves the answer to the caller (false). */
  #retry(reason: string): boolean {
    if (!this.call.retry(this, reason)) return false;
    this.finish();
    return true;
  }

  #unavailable(): boolean {
    return unavailableAnswer(this.#grpcStatus, this.#httpStatus);
  }

  /** The answer ended whole: the endpoint's health is told, and the call completes. */
  #settle(): void {
    this.finish();
    const grpcStatus = this.#grpcStatus;
    const httpStatus = this.#httpStatus;
    const failed = endpointFailed(grpcStatus, httpStatus);
    const upstreams = this.call.shared.options.upstreams;
    if (failed) upstreams.failed(this.endpoint);
    else upstreams.succeeded(this.endpoint);
    this.call.answered(outcomeOf(grpcStatus, httpStatus), failed);
  }
}
