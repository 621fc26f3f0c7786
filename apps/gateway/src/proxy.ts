import { randomUUID } from "node:crypto";
import type http from "node:http";
import http2 from "node:http2";
import type { Readable } from "node:stream";
import { cors } from "@connectrpc/connect";
import { type BoundHistogram, type Logger, requestTimeout } from "@meshwork/telemetry";
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { type Authenticator, type Identity, IdentityHeaders, type Policy } from "./auth.js";
import { Code, errorAnswer, type Protocol, protocolOf } from "./errors.js";
import type { RateLimiter } from "./ratelimit.js";
import { matchRoute, type Route } from "./routes.js";
import type { Endpoint, Upstreams } from "./upstreams.js";

export interface ProxyOptions {
  routes: ReadonlyMap<string, Route>;
  /** Access policy per method path; a path under a route but not here is an unknown method. */
  policies: ReadonlyMap<string, Policy>;
  auth: Authenticator;
  limiter: RateLimiter;
  /** Largest request body forwarded; more answers RESOURCE_EXHAUSTED. */
  maxRequestBytes: number;
  retry: RetryPolicy;
  /** Origins browsers may call from (`*` for any); empty: no CORS headers at all. */
  corsOrigins: readonly string[];
  upstreams: Upstreams;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  logger: Logger;
  tracer: Tracer;
  duration: BoundHistogram;
  /** Counts answers by route and code (or HTTP status), and by the upstream that gave them. */
  count(route: string, code: string, upstream?: string): void;
}

// Connection-specific headers (RFC 9113 8.2.2) and what the gateway sets itself.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
  "host",
]);
/**
 * How much of a retryable call's answer is held back until its end (so that it can still be
 * retried when the upstream dies before finishing it); a larger answer is streamed as it comes.
 */
const HELD_ANSWER_BYTES = 256 * 1024;
/** What the gateway holds back in all, over every call; past it answers are streamed as they come. */
const HELD_TOTAL_BYTES = 64 * 1024 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const IDENTITY = new Set<string>(Object.values(IdentityHeaders));
const CORS_ALLOW_HEADERS = [...cors.allowedHeaders, "Authorization", "X-Request-Id"].join(", ");
const CORS_EXPOSE_HEADERS = [
  ...cors.exposedHeaders,
  "X-Request-Id",
  "Retry-After",
  "X-RateLimit-Limit",
  "X-RateLimit-Remaining",
  "X-RateLimit-Reset",
].join(", ");

const getter: TextMapGetter<http2.IncomingHttpHeaders> = {
  get: (carrier, key) => {
    const v = carrier[key];
    return Array.isArray(v) ? v[0] : v;
  },
  keys: (carrier) => Object.keys(carrier),
};
const setter: TextMapSetter<http2.OutgoingHttpHeaders> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Backoff before the first retry, doubled for each further one, with jitter. */
  baseBackoffMs: number;
  /** Retries in flight at most this percent of the calls in flight... */
  budgetPercent: number;
  /** ...or this many, whichever is more. */
  minConcurrency: number;
}

/** The client side of one proxied call, over HTTP/2 or HTTP/1.1. */
interface Downstream {
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Readable;
  readonly h2: boolean;
  readonly remoteAddress: string;
  /** Starts the response; with `trailers`, `finish` later sends them (HTTP/2 only). */
  respond(status: number, headers: http2.OutgoingHttpHeaders, end: boolean, trailers: boolean): void;
  write(chunk: Buffer): boolean;
  onDrain(fn: () => void): void;
  finish(trailers: http2.OutgoingHttpHeaders | undefined): void;
  /** Ends it abruptly (the upstream failed mid-response). */
  reset(): void;
  /** The response was started to end with trailers (gRPC over HTTP/2). */
  readonly wantsTrailers: boolean;
  onGone(fn: () => void): void;
  readonly headersSent: boolean;
}

/** The gateway's request handling: route, pick an endpoint, forward frames both ways. */
export function createProxy(options: ProxyOptions) {
  const { routes, upstreams, logger, tracer } = options;
  // Envoy's retry budget: retries in flight at most a share of the calls in flight (or a few).
  const budget = {
    active: 0,
    retries: 0,
    allow(): boolean {
      return (
        this.retries <
        Math.max(options.retry.minConcurrency, (options.retry.budgetPercent / 100) * this.active)
      );
    },
  };
  /** Bytes of answers held back for a possible retry, over every call in flight. */
  let heldTotal = 0;
  const durations = new Map<string, (seconds: number) => void>();
  const recordDuration = (route: string, seconds: number) => {
    let record = durations.get(route);
    if (!record) {
      record = options.duration.bind({ route });
      durations.set(route, record);
    }
    record(seconds);
  };

  /** The call's deadline in ms: the client's, capped, or the default. */
  function deadlineOf(headers: http2.IncomingHttpHeaders): { ms: number; error?: string } {
    const t = requestTimeout(
      headers["grpc-timeout"] as string | undefined,
      headers["connect-timeout-ms"] as string | undefined,
    );
    if (t.error) return { ms: 0, error: t.error };
    return { ms: Math.min(t.ms ?? options.defaultTimeoutMs, options.maxTimeoutMs) };
  }

  function forward(down: Downstream): void {
    const started = performance.now();
    const headers = down.headers;
    const method = String(headers[":method"] ?? "GET");
    const path = String(headers[":path"] ?? "/");
    const contentType = headers["content-type"] as string | undefined;
    const protocol: Protocol = protocolOf(contentType);
    const incomingId = headers["x-request-id"];
    const requestId =
      typeof incomingId === "string" && REQUEST_ID.test(incomingId) ? incomingId : randomUUID();
    const pathKey = path.split("?", 1)[0] ?? path;
    const route = matchRoute(routes, pathKey);
    const routeName = route?.service ?? "(none)";

    // CORS: browsers' preflights are answered here; every answer to an allowed origin carries
    // the headers a browser client needs to read gRPC-Web and Connect statuses.
    const origin = typeof headers.origin === "string" ? headers.origin : undefined;
    const corsAllowed =
      origin !== undefined && (options.corsOrigins.includes("*") || options.corsOrigins.includes(origin));
    if (corsAllowed) {
      const respond = down.respond.bind(down);
      down.respond = (status, h, end, trailers) =>
        respond(
          status,
          {
            ...h,
            "access-control-allow-origin": origin,
            "access-control-expose-headers": CORS_EXPOSE_HEADERS,
            vary: "Origin",
          },
          end,
          trailers,
        );
    }
    if (method === "OPTIONS" && headers["access-control-request-method"] !== undefined) {
      down.body.resume();
      down.respond(
        204,
        corsAllowed
          ? {
              "access-control-allow-methods": cors.allowedMethods.join(", "),
              "access-control-allow-headers": CORS_ALLOW_HEADERS,
              "access-control-max-age": "7200",
            }
          : {},
        true,
        false,
      );
      options.count("(preflight)", corsAllowed ? "preflight" : "preflight_refused");
      return;
    }

    const parent = propagation.extract(ROOT_CONTEXT, headers, getter);
    const span = tracer.startSpan(
      route ? `gateway ${route.service}` : "gateway (no route)",
      { kind: SpanKind.SERVER, attributes: { "http.request.method": method, "url.path": path } },
      parent,
    );
    const ctx: Context = trace.setSpan(parent, span);

    let endpoint: Endpoint | undefined;
    let status = "";
    let bytesIn = 0;
    let bytesOut = 0;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let upstream: http2.ClientHttp2Stream | undefined;
    let releaseAttempt: (() => void) | undefined;
    budget.active++;

    const complete = (outcome: string, failure: boolean) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      releaseAttempt?.();
      budget.active--;
      status = outcome;
      const elapsed = performance.now() - started;
      options.count(routeName, outcome, endpoint?.url);
      recordDuration(routeName, elapsed / 1000);
      if (failure) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
      span.setAttribute("rpc.outcome", outcome);
      span.end();
      if (!logger.isLevelEnabled("info")) return;
      context.with(ctx, () =>
        logger.info(
          {
            method: path,
            protocol,
            status,
            upstream: endpoint?.url,
            duration_ms: Math.round(elapsed * 1000) / 1000,
            bytes_in: bytesIn,
            bytes_out: bytesOut,
            request_id: requestId,
          },
          "access",
        ),
      );
    };

    /** Answers on the gateway's own behalf, unless the response has begun (then resets). */
    const fail = (code: Code, message: string, extra: Record<string, string> = {}) => {
      upstream?.close(http2.constants.NGHTTP2_CANCEL);
      if (!down.headersSent) {
        const a = errorAnswer(protocol, contentType, code, message);
        down.respond(
          a.status,
          { ...a.headers, ...extra, "x-request-id": requestId },
          a.body === undefined,
          false,
        );
        if (a.body) {
          down.write(a.body);
          down.finish(undefined);
        }
      } else if (down.wantsTrailers) {
        // A gRPC answer cut off mid-way still ends with a status the client can act on.
        down.finish({ "grpc-status": String(code), "grpc-message": encodeURIComponent(message) });
      } else {
        down.reset();
      }
      complete(Code[code], code === Code.Unavailable || code === Code.DeadlineExceeded);
    };

    down.onGone(() => {
      if (done) return;
      upstream?.close(http2.constants.NGHTTP2_CANCEL);
      complete("client_gone", false);
    });

    if (!route) {
      down.body.resume();
      fail(Code.Unimplemented, `no route for ${path}`);
      return;
    }
    const deadline = deadlineOf(headers);
    if (deadline.error) {
      down.body.resume();
      fail(Code.InvalidArgument, deadline.error);
      return;
    }
    // The deadline runs from the call's arrival, authorization included.
    const deadlineAt = started + deadline.ms;
    timer = setTimeout(
      () => fail(Code.DeadlineExceeded, `deadline of ${deadline.ms} ms exceeded at the gateway`),
      deadline.ms,
    );
    const policy = options.policies.get(pathKey);
    if (!policy) {
      down.body.resume();
      fail(Code.Unimplemented, `unknown method ${path}`);
      return;
    }
    options.auth.authorize(policy, headers.authorization as string | undefined).then(
      (result) => {
        if (done) return;
        if (!result.ok) {
          down.body.resume();
          fail(result.code, result.message);
          return;
        }
        send(result.identity);
      },
      (err: unknown) => fail(Code.Internal, `authorization failed: ${String(err)}`),
    );

    function send(identity: Identity | undefined): void {
      if (!route) return;
      const limit = options.limiter.take(pathKey, identity?.subject ?? `ip:${down.remoteAddress}`);
      if (!limit.allowed) {
        down.body.resume();
        fail(
          Code.ResourceExhausted,
          `rate limit ${limit.rule.text} exceeded; retry in ${limit.retryAfterS}s`,
          {
            "retry-after": String(limit.retryAfterS),
            "x-ratelimit-limit": String(limit.rule.burst),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": String(limit.retryAfterS),
          },
        );
        return;
      }
      const baseHeaders: http2.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(headers)) {
        // Identity headers come from the gateway only: a client's own are dropped.
        if (v === undefined || HOP_BY_HOP.has(k) || k.startsWith(":") || IDENTITY.has(k)) continue;
        baseHeaders[k] = v;
      }
      if (identity) {
        baseHeaders[IdentityHeaders.subject] = identity.subject;
        baseHeaders[IdentityHeaders.roles] = identity.roles.join(",");
        if (identity.email) baseHeaders[IdentityHeaders.email] = identity.email;
      }
      baseHeaders[":method"] = method;
      baseHeaders[":path"] = path;
      baseHeaders[":scheme"] = "http";
      baseHeaders["x-request-id"] = requestId;
      baseHeaders["x-forwarded-host"] = String(headers[":authority"] ?? headers.host ?? "");
      delete baseHeaders["grpc-timeout"];
      delete baseHeaders["connect-timeout-ms"];
      propagation.inject(ctx, baseHeaders, setter);

      // Retried only if the contract marks the method idempotent, the call is unary (its body
      // can be kept and sent again) and the answer is UNAVAILABLE before anything was forwarded.
      const retryable =
        route.retryable.has(pathKey.slice(pathKey.lastIndexOf("/") + 1)) && protocol !== "connect-stream";
      const tried = new Set<Endpoint>();
      let attempt = 0;

      const tooLarge = () =>
        fail(
          Code.ResourceExhausted,
          `request larger than the gateway's limit of ${options.maxRequestBytes} bytes`,
        );

      /** Counts a request chunk; over the size limit, stops reading and answers instead. */
      const admit = (chunk: Buffer): boolean => {
        bytesIn += chunk.length;
        if (bytesIn <= options.maxRequestBytes) return true;
        down.body.pause();
        tooLarge();
        return false;
      };

      if (retryable) {
        // Keep the whole (small) request, to send it again on another endpoint if need be.
        const chunks: Buffer[] = [];
        down.body.on("data", (chunk: Buffer) => {
          if (admit(chunk)) chunks.push(chunk);
        });
        down.body.once("end", () => {
          if (!done) tryOnce(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
        });
      } else {
        tryOnce(undefined);
      }

      function tryOnce(body: Buffer | undefined): void {
        if (!route || done) return;
        attempt++;
        // Another endpoint than the ones that failed this call, while there is one.
        const chosen = upstreams.pick(route.cluster, Date.now(), tried);
        if (!chosen) {
          down.body.resume();
          fail(Code.Unavailable, `no endpoint for cluster ${route.cluster}`);
          return;
        }
        const target: Endpoint = chosen;
        /** This attempt has been given up (retried or failed): its later events change nothing. */
        let over = false;
        tried.add(chosen);
        endpoint = chosen;
        chosen.active++;
        chosen.total++;
        // For a retryable call the whole answer (a unary one: one message) is held until its end,
        // up to HELD_ANSWER_BYTES (and while the gateway holds less than HELD_TOTAL_BYTES in all),
        // so an UNAVAILABLE carried in the trailers, or an upstream that dies between its message
        // and its trailers, can still be retried elsewhere.
        let heldChunks: Buffer[] = [];
        let heldBytes = 0;
        const dropHeld = () => {
          heldTotal -= heldBytes;
          heldBytes = 0;
          heldChunks = [];
        };
        let released = false;
        const release = () => {
          dropHeld();
          if (!released) {
            released = true;
            chosen.active--;
          }
        };
        releaseAttempt = release;
        span.setAttribute("meshwork.upstream", chosen.url);
        span.setAttribute("meshwork.attempts", attempt);

        const upHeaders: http2.OutgoingHttpHeaders = {
          ...baseHeaders,
          ":authority": chosen.authority,
        };
        // What is left of the deadline goes upstream, in the client's protocol.
        const remaining = Math.max(1, Math.round(deadlineAt - performance.now()));
        if (protocol === "connect" || protocol === "connect-stream")
          upHeaders["connect-timeout-ms"] = String(remaining);
        else upHeaders["grpc-timeout"] = `${remaining}m`;

        /** Whether this failure may be retried (and then retries); false when the caller must answer. */
        const retried = (reason: string): boolean => {
          over = true;
          release();
          if (!body || attempt >= options.retry.maxAttempts || done || !budget.allow()) return false;
          budget.retries++;
          logger.debug({ request_id: requestId, upstream: chosen.url, reason, attempt }, "retrying");
          const backoff = options.retry.baseBackoffMs * 2 ** (attempt - 1) * (0.5 + Math.random());
          setTimeout(() => {
            budget.retries--;
            tryOnce(body);
          }, backoff);
          return true;
        };

        let up: http2.ClientHttp2Stream;
        try {
          up = upstreams.session(chosen).request(upHeaders);
        } catch (err) {
          upstreams.failed(chosen);
          if (!retried("connect"))
            fail(Code.Unavailable, `upstream ${route.cluster} unavailable: ${(err as Error).message}`);
          return;
        }
        upstream = up;
        if (body) {
          up.end(body);
        } else {
          // Request body: client -> upstream as it comes, with backpressure.
          down.body.on("data", (chunk: Buffer) => {
            if (!admit(chunk)) return;
            if (!up.write(chunk)) {
              down.body.pause();
              up.once("drain", () => down.body.resume());
            }
          });
          down.body.once("end", () => up.end());
        }

        let answered = false;
        let grpcStatus: string | undefined;
        /** Passes the held answer on (headers, then its bytes); set while an answer is held. */
        let held: (() => void) | undefined;
        let answerHeaders: http2.IncomingHttpHeaders = {};
        let httpStatus = 0;
        /** A gRPC answer (not gRPC-Web): it must end with trailers. */
        let grpcAnswer = false;
        up.once("response", (h, flags) => {
          if (done || over) return;
          answerHeaders = h;
          const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
          httpStatus = Number(h[":status"] ?? 502);
          if (typeof h["grpc-status"] === "string") grpcStatus = h["grpc-status"];
          // A trailers-only UNAVAILABLE (draining, not ready) has forwarded nothing: retry it.
          if (endStream && isUnavailable()) {
            upstreams.failed(chosen);
            if (retried("unavailable")) return;
          }
          const out: http2.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(h)) {
            if (v === undefined || HOP_BY_HOP.has(k) || (k.startsWith(":") && k !== ":status")) continue;
            out[k] = v;
          }
          out["x-request-id"] = requestId;
          const isGrpc =
            String(h["content-type"] ?? "").startsWith("application/grpc") &&
            !String(h["content-type"]).startsWith("application/grpc-web");
          grpcAnswer = isGrpc;
          const forwardHeaders = () => {
            held = undefined;
            answered = true;
            down.respond(httpStatus, out, endStream, isGrpc && !endStream && down.h2);
            if (heldBytes > 0) {
              // One write: a drain listener per held chunk would pile up on a slow client.
              const bytes = heldChunks.length === 1 ? (heldChunks[0] as Buffer) : Buffer.concat(heldChunks);
              dropHeld();
              passOn(bytes);
            }
          };
          /** Sends answer bytes to the client, pausing the upstream while the client lags. */
          const passOn = (chunk: Buffer) => {
            bytesOut += chunk.length;
            if (!down.write(chunk)) {
              up.pause();
              down.onDrain(() => up.resume());
            }
          };
          if (endStream) {
            forwardHeaders();
            settle(httpStatus);
            return;
          }
          if (body) held = forwardHeaders;
          else forwardHeaders();
          up.on("data", (chunk: Buffer) => {
            if (over || done) return;
            if (held) {
              heldChunks.push(chunk);
              heldBytes += chunk.length;
              heldTotal += chunk.length;
              // A large answer (or one past the gateway's total) is passed on as it comes: it
              // can no longer be retried.
              if (heldBytes > HELD_ANSWER_BYTES || heldTotal > HELD_TOTAL_BYTES) held();
              return;
            }
            passOn(chunk);
          });
        });
        let trailers: http2.IncomingHttpHeaders | undefined;
        up.once("trailers", (t) => {
          trailers = t;
          if (typeof t["grpc-status"] === "string") grpcStatus = t["grpc-status"];
        });
        up.once("end", () => {
          if (done || over) return;
          // A gRPC answer that ends without trailers was cut off (the upstream died mid-answer,
          // its connection closed under it): never pass it on as if complete.
          if (grpcAnswer && trailers === undefined) {
            lost("ended the answer without trailers");
            return;
          }
          if (held) {
            // Nothing forwarded yet: an UNAVAILABLE in the trailers may still go elsewhere, and
            // an answer that is not whole (its stream closed early) is not passed on as if it were.
            if (isUnavailable()) {
              upstreams.failed(chosen);
              if (retried("unavailable")) return;
            }
            const incomplete = cutShort(answerHeaders, heldChunks, heldBytes);
            if (incomplete) {
              lost(incomplete);
              return;
            }
            held();
          }
          if (!answered) return;
          const out: http2.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(trailers ?? {}))
            if (v !== undefined && !k.startsWith(":")) out[k] = v;
          down.finish(out);
          settle(httpStatus);
        });
        function isUnavailable(): boolean {
          return grpcStatus === String(Code.Unavailable) || (grpcStatus === undefined && httpStatus === 503);
        }
        const lost = (reason: string) => {
          if (over) return;
          if (done || answered) {
            if (!done && endpoint === chosen) {
              // Reset mid-answer: nothing can be retried any more.
              upstreams.failed(chosen);
              release();
              fail(Code.Unavailable, `upstream ${route?.cluster} ${reason}`);
            }
            return;
          }
          upstreams.failed(chosen);
          if (!retried(reason)) {
            over = true;
            fail(Code.Unavailable, `upstream ${route?.cluster} ${reason}`);
          }
        };
        up.once("error", (err: NodeJS.ErrnoException) => lost(`unavailable: ${err.code ?? err.message}`));
        up.once("close", () => lost(`reset the stream (code ${up.rstCode})`));

        function settle(httpStatus: number) {
          release();
          const unavailable = grpcStatus === String(Code.Unavailable) || httpStatus === 503;
          if (unavailable) upstreams.failed(target);
          else upstreams.succeeded(target);
          const outcome =
            grpcStatus !== undefined ? (Code[Number(grpcStatus)] ?? grpcStatus) : `http_${httpStatus}`;
          complete(outcome === "0" ? "OK" : outcome, unavailable);
        }
      }
    }
  }

  return {
    /** An HTTP/2 stream from the listener. */
    stream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
      forward(new H2Downstream(stream, headers));
    },

    /** An HTTP/1.1 request from the listener (Connect unary, gRPC-Web, plain fetch). */
    request(req: http.IncomingMessage, res: http.ServerResponse): void {
      forward(new H1Downstream(req, res));
    },
  };
}

function ignore() {
  // Stream errors end in "close", which the proxy handles.
}

/**
 * The client side over HTTP/1.1: one object per call, its methods shared. A class rather than
 * an object literal with a getter: such a literal is a dictionary-mode object with a closure of
 * its own per call, which kept calls alive through young-generation GCs (issue 7).
 */
class H1Downstream implements Downstream {
  readonly h2 = false;
  readonly wantsTrailers = false;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Readable;
  readonly remoteAddress: string;

  constructor(
    req: http.IncomingMessage,
    readonly res: http.ServerResponse,
  ) {
    this.headers = {
      ...req.headers,
      ":method": req.method ?? "GET",
      ":path": req.url ?? "/",
      ":authority": req.headers.host ?? "",
    };
    this.body = req;
    this.remoteAddress = req.socket.remoteAddress ?? "unknown";
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  respond(status: number, h: http2.OutgoingHttpHeaders, end: boolean): void {
    const plain: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(h))
      if (v !== undefined && !k.startsWith(":")) plain[k] = v as string | string[];
    this.res.writeHead(status, plain);
    if (end) this.res.end();
  }

  write(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }

  onDrain(fn: () => void): void {
    this.res.once("drain", fn);
  }

  finish(): void {
    if (!this.res.writableEnded) this.res.end();
  }

  reset(): void {
    this.res.destroy();
  }

  onGone(fn: () => void): void {
    const res = this.res;
    res.once("close", () => {
      if (!res.writableFinished) fn();
    });
  }
}

/** The client side over HTTP/2: one object per call, its methods shared. */
class H2Downstream implements Downstream {
  readonly h2 = true;
  readonly body: Readable;
  readonly remoteAddress: string;
  #trailers: http2.OutgoingHttpHeaders | undefined;
  #wantsTrailers = false;

  constructor(
    readonly stream: http2.ServerHttp2Stream,
    readonly headers: http2.IncomingHttpHeaders,
  ) {
    this.body = stream;
    this.remoteAddress = stream.session?.socket?.remoteAddress ?? "unknown";
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
    if (trailers) {
      stream.once("wantTrailers", () => {
        try {
          stream.sendTrailers(this.#trailers ?? { "grpc-status": String(Code.Internal) });
        } catch {
          stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        }
      });
    }
  }

  write(chunk: Buffer): boolean {
    // A stream the client reset takes nothing more: "no room" holds the upstream back until
    // its "close" ends the call as client_gone (it would otherwise be drained for nothing).
    if (this.stream.destroyed) return false;
    return this.stream.write(chunk);
  }

  onDrain(fn: () => void): void {
    this.stream.once("drain", fn);
  }

  finish(trailers: http2.OutgoingHttpHeaders | undefined): void {
    this.#trailers = this.#wantsTrailers ? trailers : undefined;
    if (!this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
  }

  reset(): void {
    this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }

  onGone(fn: () => void): void {
    const stream = this.stream;
    let gone = false;
    const once = () => {
      if (gone) return;
      gone = true;
      fn();
    };
    // "aborted": the client reset the stream before its answer ended (emitted at once, where
    // "close" may come later, after writes still queued on the stream are given up).
    stream.once("aborted", once);
    stream.once("close", () => {
      if (!stream.writableFinished) once();
    });
  }
}

/**
 * Why a held answer (Connect or gRPC-Web, which carry no HTTP trailers) is not whole though its
 * stream ended: the upstream's connection may close a stream without an error code, and Node then
 * ends it as if complete. A gRPC-Web body must be whole frames ending with the trailer frame; a
 * body with a content-length must have that many bytes. Undefined when it is whole (or cannot
 * tell).
 */
function cutShort(headers: http2.IncomingHttpHeaders, chunks: Buffer[], length: number): string | undefined {
  const contentType = String(headers["content-type"] ?? "");
  if (contentType.startsWith("application/grpc-web")) {
    if (contentType.startsWith("application/grpc-web-text")) return undefined; // base64: not parsed
    if (length === 0 && headers["grpc-status"] !== undefined) return undefined; // status in headers
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
    let at = 0;
    let trailerFrame = false;
    while (at + 5 <= body.length) {
      trailerFrame = ((body[at] as number) & 0x80) !== 0;
      at += 5 + body.readUInt32BE(at + 1);
    }
    return at === body.length && trailerFrame ? undefined : "ended the answer before its trailers";
  }
  const declared = Number(headers["content-length"]);
  if (headers["content-length"] !== undefined && Number.isFinite(declared) && declared !== length)
    return `ended the answer after ${length} of ${declared} bytes`;
  return undefined;
}
