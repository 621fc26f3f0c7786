import http2 from "node:http2";
import type { Readable } from "node:stream";
import { injectIds } from "@meshwork/telemetry";
import {
  type Context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { AuthResult, Identity } from "../auth.js";
import { Code, errorAnswer, grpcMessage, type Protocol, protocolOf } from "../errors.js";
import { matchRoute, type Route } from "../routes.js";
import type { Endpoint } from "../upstreams.js";
import type { AccessEntry } from "./access-log.js";
import { admit, corsOriginOf, isPreflight, preflightHeaders, type Refusal, rateLimit } from "./admission.js";
import type { ClientBytes } from "./answer.js";
import { UpstreamAttempt } from "./attempt.js";
import type { Downstream } from "./downstream.js";
import {
  attemptHeaders,
  requestIdOf,
  setAttempt,
  traceGetter,
  traceSetter,
  upstreamHeaders,
  withCors,
} from "./headers.js";
import { keptBytes } from "./kept-body.js";
import type { ProxyShared } from "./options.js";
import { backoffMs, isRetryable, mayRetry } from "./retry.js";

/**
 * - admitting: deadline, policy, authorization, rate limit (nothing sent upstream yet);
 * - forwarding: attempts upstream, one at a time;
 * - done: answered (or the client gone); later events change nothing.
 */
type CallState = "admitting" | "forwarding" | "done";

/** Where a call's request body keeps its call, for the listeners every body shares. */
const CALL = Symbol("call");

type CallBody = Readable & { [CALL]: ProxiedCall };

/** Why gRPC over HTTP/1.1 is refused at the edge. */
export const GRPC_OVER_HTTP1 =
  "gRPC needs HTTP/2 (its status travels in trailers): call over h2c (HTTP/2 prior knowledge), or use gRPC-Web (application/grpc-web+proto) or Connect over HTTP/1.1";

/**
 * One call through the gateway, from its headers to its last byte: admission, its attempts
 * upstream (each an {@link UpstreamAttempt}), and the one place it finishes ({@link complete}).
 */
export class ProxiedCall implements ClientBytes {
  readonly started = performance.now();
  readonly method: string;
  readonly path: string;
  /** The path without its query: the method's key in the route and policy tables. */
  readonly pathKey: string;
  readonly contentType: string | undefined;
  readonly protocol: Protocol;
  readonly requestId: string;
  readonly route: Route | undefined;
  /** An allowed CORS origin: every answer carries the headers a browser needs to read it. */
  readonly corsOrigin: string | undefined;
  #state: CallState = "admitting";
  #span: Span | undefined;
  /** Whether the call's span records: then each attempt is a CLIENT span of its own. */
  #recording = false;
  #ctx: Context = ROOT_CONTEXT;
  /** Whether its deadline is in the proxy's {@link Deadlines} (until it completes or expires). */
  #timed = false;
  /** When the deadline passes (`performance.now()` clock); it runs from the call's arrival. */
  #deadlineAt = 0;
  #deadlineMs = 0;
  /** The headers every attempt sends upstream. */
  #upstreamHeaders: http2.OutgoingHttpHeaders | undefined;
  /** The latest attempt (earlier ones are finished). */
  #attempt: UpstreamAttempt | undefined;
  #attempts = 0;
  /** Counted in its client's calls in flight (released when it completes). */
  #countedForClient = false;
  /** Bytes counted as held for its client (its body kept for a retry, a held answer), released by the time it completes. */
  #clientBytes = 0;
  /**
   * Answer bytes written to the client that it has not taken, counted in its client's bytes;
   * counted only once Node's write buffer is full (the client lags), so 0 on the usual path.
   */
  #unread = 0;
  /** Endpoints tried: a retry goes elsewhere while there is somewhere else (made on a retry only). */
  #tried: Set<Endpoint> | undefined;
  /** The endpoint of the first attempt (most calls make only one: no set for them). */
  #first: Endpoint | undefined;
  bytesIn = 0;
  bytesOut = 0;
  /** A retryable call's request, as it comes (until its end). */
  #kept: Buffer[] | undefined;
  /** Where a call that is not retried streams its request. */
  #streamedTo: http2.ClientHttp2Stream | undefined;

  constructor(
    readonly shared: ProxyShared,
    readonly down: Downstream,
  ) {
    const headers = down.headers;
    this.method = String(headers[":method"] ?? "GET");
    this.path = String(headers[":path"] ?? "/");
    this.contentType = headers["content-type"] as string | undefined;
    this.protocol = protocolOf(this.contentType);
    this.requestId = requestIdOf(headers);
    const query = this.path.indexOf("?");
    this.pathKey = query < 0 ? this.path : this.path.slice(0, query);
    this.route = matchRoute(shared.options.routes, this.pathKey);
    this.corsOrigin = corsOriginOf(headers, shared.options.corsOrigins);
  }

  get done(): boolean {
    return this.#state === "done";
  }

  get deadlineAt(): number {
    return this.#deadlineAt;
  }

  /** Its deadline passed (told by the proxy's {@link Deadlines}). */
  expire(): void {
    this.#timed = false;
    this.fail(Code.DeadlineExceeded, `deadline of ${this.#deadlineMs} ms exceeded at the gateway`);
  }

  get routeName(): string {
    return this.route?.service ?? "(none)";
  }

  /** Admission up to authorization (which goes on in {@link #authorized}). */
  start(): void {
    const { options } = this.shared;
    const headers = this.down.headers;
    if (isPreflight(this.method, headers)) {
      this.#preflight();
      return;
    }
    const parent = propagation.extract(ROOT_CONTEXT, headers, traceGetter);
    const span = this.shared.spans.server(
      parent,
      this.route,
      this.pathKey,
      this.protocol,
      this.method,
      this.path,
    );
    this.#span = span;
    this.#recording = span.isRecording();
    // Only a recording span's context is needed (its attempts' spans start in it); an id-only
    // span's ids go upstream as they are, with the parent's baggage (see #authorized).
    this.#ctx = this.shared.spans.idsOnly ? parent : trace.setSpan(parent, span);
    this.shared.budget.active++;
    this.down.onGone(() => this.#gone());
    const { clientCalls } = this.shared;
    if (!clientCalls.take(this.down.remoteAddress)) {
      this.#refuse({
        ok: false,
        code: Code.ResourceExhausted,
        message: `too many calls in flight from this client (limit ${clientCalls.limit})`,
      });
      return;
    }
    this.#countedForClient = true;

    // gRPC ends every answer with trailers, which HTTP/1.1 cannot carry to this client: its status
    // would be lost (an answer without grpc-status). Refused with the status in the headers, which
    // it can read, naming what to use instead.
    if (this.protocol === "grpc" && !this.down.h2) {
      this.#refuse({ ok: false, code: Code.Unimplemented, message: GRPC_OVER_HTTP1 });
      return;
    }
    const admitted = admit(options, this.route, this.path, this.pathKey, headers);
    if (!admitted.ok) {
      this.#refuse(admitted);
      return;
    }
    this.#deadlineMs = admitted.deadlineMs;
    this.#deadlineAt = this.started + admitted.deadlineMs;
    this.#timed = true;
    this.shared.deadlines.add(this);
    const authorization = headers.authorization as string | undefined;
    // A token verified before is answered at once (no promise per call); others are verified.
    const now = options.auth.authorizeNow(admitted.policy, authorization);
    if (now) {
      this.#afterAuth(now);
      return;
    }
    options.auth.authorize(admitted.policy, authorization).then(
      (result) => this.#afterAuth(result),
      (err: unknown) => this.fail(Code.Internal, `authorization failed: ${String(err)}`),
    );
  }

  #afterAuth(result: AuthResult): void {
    if (this.done) return;
    if (result.ok) this.#authorized(result.identity);
    else this.#refuse({ ok: false, code: result.code, message: result.message });
  }

  /** A CORS preflight: answered here, never forwarded. */
  #preflight(): void {
    const allowed = this.corsOrigin !== undefined;
    this.down.body.resume();
    // An origin not configured is refused outright (403), not answered without CORS headers.
    this.respond(allowed ? 204 : 403, preflightHeaders(allowed), true, false);
    this.shared.options.count("(preflight)", allowed ? "preflight" : "preflight_refused");
  }

  /** The rest of admission (the rate limit), then the call goes upstream. */
  #authorized(identity: Identity | undefined): void {
    const { options } = this.shared;
    const refusal = rateLimit(options.limiter, this.pathKey, identity, this.down.remoteAddress);
    if (refusal) {
      this.#refuse(refusal);
      return;
    }
    const route = this.route as Route;
    this.#state = "forwarding";
    const { method, path, requestId } = this;
    // Audience-bound: an assertion for one service is refused by every other.
    const assertion = identity && options.assert.sign(identity, route.cluster);
    const base = upstreamHeaders(this.down.headers, { method, path, requestId, assertion });
    // A span that records gets a CLIENT span per attempt, whose context goes upstream instead.
    if (this.shared.spans.idsOnly)
      injectIds((this.#span as Span).spanContext(), this.#ctx, base, traceSetter);
    else if (!this.#recording) propagation.inject(this.#ctx, base, traceSetter);
    this.#upstreamHeaders = base;
    // Retried only if the contract marks the method idempotent, the call is unary (its body
    // can be kept and sent again) and the answer is UNAVAILABLE before anything was forwarded.
    if (!isRetryable(route, this.pathKey, this.protocol)) {
      this.#tryOnce(undefined);
      return;
    }
    // An empty request has ended already, while authorization ran (see streamBody).
    if (this.down.body.readableEnded) {
      this.#tryOnce(Buffer.alloc(0));
      return;
    }
    // Keep the whole (small) request, to send it again on another endpoint if need be. The
    // listeners are shared by every call: each finds its call on the body (no closures per call).
    const body = this.down.body as CallBody;
    this.#kept = [];
    body[CALL] = this;
    body.on("data", ProxiedCall.#keptDataListener);
    body.once("end", ProxiedCall.#keptEndListener);
  }

  static readonly #keptDataListener = function (this: CallBody, chunk: Buffer): void {
    const call = this[CALL];
    if (!call.done && call.admitChunk(chunk) && call.#keepForRetry(chunk)) call.#kept?.push(keptBytes(chunk));
  };

  static readonly #keptEndListener = function (this: CallBody): void {
    const call = this[CALL];
    const chunks = call.#kept ?? [];
    call.#kept = undefined;
    if (!call.done) call.#tryOnce(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
  };

  #refuse(refusal: Refusal): void {
    this.down.body.resume();
    this.fail(refusal.code, refusal.message, refusal.headers, refusal.httpStatus);
  }

  /** Counts a request chunk; over the size limit, stops reading and answers instead. */
  admitChunk(chunk: Buffer): boolean {
    this.bytesIn += chunk.length;
    const max = this.shared.options.maxRequestBytes;
    if (this.bytesIn <= max) return true;
    this.down.body.pause();
    this.fail(Code.ResourceExhausted, `request larger than the gateway's limit of ${max} bytes`);
    return false;
  }

  /**
   * Counts a request chunk kept for a retry in its client's bytes; past the client's limit, keeps
   * nothing more and answers RESOURCE_EXHAUSTED instead (one client's slow, large bodies on many
   * streams would otherwise each be held whole).
   */
  #keepForRetry(chunk: Buffer): boolean {
    if (this.holdBytes(chunk.length)) return true;
    this.fail(
      Code.ResourceExhausted,
      `too many request bytes held for this client (limit ${this.shared.clientCalls.bytesLimit} bytes)`,
    );
    // The client is told to stop sending (HTTP/2); what still comes is read and dropped.
    this.down.stopBody?.();
    return false;
  }

  holdBytes(bytes: number): boolean {
    if (!this.shared.clientCalls.hold(this.down.remoteAddress, bytes)) return false;
    this.#clientBytes += bytes;
    return true;
  }

  unholdBytes(bytes: number): void {
    const n = Math.min(bytes, this.#clientBytes);
    this.#clientBytes -= n;
    this.shared.clientCalls.unhold(this.down.remoteAddress, n);
  }

  /** Request body: client -> upstream as it comes, with backpressure (a call not retried). */
  streamBody(up: http2.ClientHttp2Stream): void {
    const body = this.down.body as CallBody;
    // Shared listeners, as for a kept request (a streamed call has one attempt: it is never retried).
    this.#streamedTo = up;
    body[CALL] = this;
    body.on("data", ProxiedCall.#streamedDataListener);
    // An empty request (END_STREAM on its headers) has ended already, while authorization ran:
    // waiting for its "end" hung the call until its deadline (found by fuzzing, issue 26.3).
    if (body.readableEnded) up.end();
    else body.once("end", ProxiedCall.#streamedEndListener);
  }

  static readonly #streamedDataListener = function (this: CallBody, chunk: Buffer): void {
    const call = this[CALL];
    const up = call.#streamedTo as http2.ClientHttp2Stream;
    if (!call.admitChunk(chunk)) return;
    if (!up.write(chunk)) {
      this.pause();
      up.once("drain", () => this.resume());
    }
  };

  static readonly #streamedEndListener = function (this: CallBody): void {
    this[CALL].#streamedTo?.end();
  };

  /**
   * Sends answer bytes to the client; false when that reset the call. The upstream is never
   * paused for a client that does not take its answer: a paused stream leaves the rest of its
   * answer in the service's HTTP/2 session, which every client's calls share, and past that
   * session's memory the service refuses new streams on it (issue 25.2). The gateway takes the
   * answer instead, counts what the client has not taken in its client's bytes, and resets the
   * call once that passes the client's limit.
   */
  passOn(chunk: Buffer): boolean {
    this.bytesOut += chunk.length;
    if (this.down.write(chunk) && this.#unread === 0) return true;
    return this.#lagging();
  }

  /** The client lags: its backlog is counted (what it took since is let go). */
  #lagging(): boolean {
    const backlog = this.down.backlog;
    const more = backlog - this.#unread;
    if (more > 0 && !this.holdBytes(more)) {
      this.#tooSlow();
      return false;
    }
    if (more < 0) this.unholdBytes(-more);
    // Entered with a write that found the buffer full, so "drain" comes once the client took it.
    if (this.#unread === 0 && backlog > 0) this.down.onDrain(() => this.#drained());
    this.#unread = backlog;
    return true;
  }

  #drained(): void {
    if (this.done) return;
    this.unholdBytes(this.#unread);
    this.#unread = 0;
  }

  /** Past its client's limit: reset (what it has not taken is dropped), RESOURCE_EXHAUSTED. */
  #tooSlow(): void {
    this.shared.options.logger.debug(
      { request_id: this.requestId, unread: this.down.backlog, limit: this.shared.clientCalls.bytesLimit },
      "client does not take its answers: call reset",
    );
    this.#attempt?.cancel();
    // ENHANCE_YOUR_CALM: a gRPC client reports RESOURCE_EXHAUSTED.
    this.down.reset(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    this.complete(Code[Code.ResourceExhausted], false);
  }

  /**
   * The answer came whole from upstream (and went to the client's side): the call completes when
   * the client has taken it. Until then it stays counted in its client's calls and bytes, and its
   * deadline still resets it.
   */
  answered(outcome: string, failure: boolean): void {
    if (this.#unread === 0) this.complete(outcome, failure);
    else this.down.onFlushed(() => this.complete(outcome, failure));
  }

  /** One attempt upstream, on another endpoint than the ones that failed this call while there is one. */
  #tryOnce(body: Buffer | undefined): void {
    if (this.done) return;
    const cluster = (this.route as Route).cluster;
    this.#attempts++;
    if (this.#first && !this.#tried) this.#tried = new Set([this.#first]);
    const chosen = this.shared.options.upstreams.pick(cluster, Date.now(), this.#tried);
    if (!chosen) {
      this.down.body.resume();
      this.fail(Code.Unavailable, `no endpoint for cluster ${cluster}`);
      return;
    }
    if (this.#tried) this.#tried.add(chosen);
    else this.#first = chosen;
    // The first attempt sends the call's headers object itself (one copy less per call).
    const headers = (this.#attempts === 1 ? setAttempt : attemptHeaders)(
      this.#upstreamHeaders as http2.OutgoingHttpHeaders,
      chosen.authority,
      this.protocol,
      this.#deadlineAt - performance.now(),
    );
    let span: Span | undefined;
    if (this.#recording) {
      const route = this.route as Route;
      span = this.shared.spans.attempt(
        this.#ctx,
        route,
        this.pathKey,
        this.protocol,
        chosen,
        this.#attempts,
        headers,
      );
      this.#span?.setAttribute("meshwork.upstream", chosen.url);
      this.#span?.setAttribute("meshwork.attempts", this.#attempts);
    }
    const calls = this.shared.spans.calls(this.route as Route, this.pathKey, this.protocol);
    const attempt = new UpstreamAttempt(this, chosen, body, span, calls);
    this.#attempt = attempt;
    attempt.send(headers);
  }

  /** Whether a failed attempt goes again (after a backoff); false when the caller must answer. */
  retry(failed: UpstreamAttempt, reason: string): boolean {
    const { budget, options } = this.shared;
    if (this.done || !mayRetry(budget, this.#attempts, failed.body !== undefined)) return false;
    budget.retries++;
    const attempt = this.#attempts;
    options.logger.debug(
      { request_id: this.requestId, upstream: failed.endpoint.url, reason, attempt },
      "retrying",
    );
    setTimeout(
      () => {
        budget.retries--;
        this.#tryOnce(failed.body);
      },
      backoffMs(budget.policy, attempt),
    );
    return true;
  }

  /** Starts the answer to the client (with CORS headers for an allowed origin). */
  respond(status: number, headers: http2.OutgoingHttpHeaders, end: boolean, trailers: boolean): void {
    const origin = this.corsOrigin;
    this.down.respond(status, origin === undefined ? headers : withCors(headers, origin), end, trailers);
  }

  /**
   * Answers on the gateway's own behalf, unless the response has begun (then ends it so);
   * `httpStatus` replaces the code's HTTP status in a Connect unary answer.
   */
  fail(code: Code, message: string, extra?: Record<string, string>, httpStatus?: number): void {
    this.#attempt?.cancel();
    const down = this.down;
    if (!down.headersSent) {
      const a = errorAnswer(this.protocol, this.contentType, code, message);
      this.respond(
        httpStatus !== undefined && this.protocol === "connect" ? httpStatus : a.status,
        { ...a.headers, ...extra, "x-request-id": this.requestId },
        a.body === undefined,
        false,
      );
      if (a.body) {
        down.write(a.body);
        down.finish({});
      }
    } else if (down.wantsTrailers && this.#unread === 0) {
      // A gRPC answer cut off mid-way still ends with a status the client can act on.
      down.finish({ "grpc-status": String(code), "grpc-message": grpcMessage(message) });
    } else {
      // (Also a client that lags: its trailers would wait behind what it has not taken.)
      down.reset();
    }
    this.complete(Code[code], code === Code.Unavailable || code === Code.DeadlineExceeded);
  }

  #gone(): void {
    if (this.done) return;
    this.#attempt?.cancel();
    this.complete("client_gone", false);
  }

  /** The one place a call finishes: counted, timed, traced and logged once. */
  complete(outcome: string, failure: boolean): void {
    if (this.done) return;
    this.#state = "done";
    if (this.#timed) {
      this.#timed = false;
      this.shared.deadlines.delete(this);
    }
    this.#attempt?.finish();
    const { options, budget } = this.shared;
    budget.active--;
    if (this.#countedForClient) this.shared.clientCalls.release(this.down.remoteAddress);
    if (this.#clientBytes > 0) this.unholdBytes(this.#clientBytes);
    const elapsed = performance.now() - this.started;
    const routeName = this.routeName;
    const endpoint = this.#attempt?.endpoint;
    options.count(routeName, outcome, endpoint?.url);
    this.shared.recordDuration(routeName, elapsed / 1000);
    const span = this.#span;
    if (span) {
      if (failure) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
      span.setAttribute("rpc.outcome", outcome);
      if (this.#recording && (this.protocol === "grpc" || this.protocol === "grpc-web")) {
        const code = outcome === "OK" ? 0 : Code[outcome as keyof typeof Code];
        if (typeof code === "number") span.setAttribute("rpc.grpc.status_code", code);
      }
      span.end();
    }
    const accessLog = this.shared.accessLog;
    if (!accessLog.enabled) return;
    const entry: AccessEntry = {
      method: this.path,
      protocol: this.protocol,
      status: outcome,
      upstream: endpoint?.url,
      duration_ms: Math.round(elapsed * 1000) / 1000,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      request_id: this.requestId,
    };
    if (span) {
      // The ids the logger's mixin would take from the call's context, set here: entering the
      // context per call (context.with, an AsyncLocalStorage run and a closure) only to read
      // them back cost more than the line's own fields.
      const ids = span.spanContext();
      entry.trace_id = ids.traceId;
      entry.span_id = ids.spanId;
    }
    accessLog.write(entry);
  }
}
