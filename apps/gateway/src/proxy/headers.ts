import { randomUUID } from "node:crypto";
import type http2 from "node:http2";
import { cors } from "@connectrpc/connect";
import { ASSERTION_HEADER } from "@meshwork/runtime";
import type { TextMapGetter, TextMapSetter } from "@opentelemetry/api";
import { IdentityHeaders } from "../auth.js";
import type { Protocol } from "../errors.js";

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
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
// The client's deadline: each attempt sends what is left of it instead.
const DEADLINE = new Set(["grpc-timeout", "connect-timeout-ms"]);
// Only the gateway says who calls, and only in a signed assertion: a client's are dropped.
const IDENTITY = new Set<string>([...Object.values(IdentityHeaders), ASSERTION_HEADER]);

export const CORS_ALLOW_HEADERS = [...cors.allowedHeaders, "Authorization", "X-Request-Id"].join(", ");
export const CORS_EXPOSE_HEADERS = [
  ...cors.exposedHeaders,
  "X-Request-Id",
  "Retry-After",
  "X-RateLimit-Limit",
  "X-RateLimit-Remaining",
  "X-RateLimit-Reset",
].join(", ");

/** Reads W3C trace context from a call's headers. */
export const traceGetter: TextMapGetter<http2.IncomingHttpHeaders> = {
  get: (carrier, key) => {
    const v = carrier[key];
    return Array.isArray(v) ? v[0] : v;
  },
  keys: (carrier) => Object.keys(carrier),
};

/** Writes W3C trace context into the headers of a call upstream. */
export const traceSetter: TextMapSetter<http2.OutgoingHttpHeaders> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/** The client's `x-request-id` when it is a sane one, else a new one. */
export function requestIdOf(headers: http2.IncomingHttpHeaders): string {
  const incoming = headers["x-request-id"];
  return typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/** What a call carries upstream on every attempt (`:authority` and the deadline come per attempt). */
export interface UpstreamRequest {
  method: string;
  path: string;
  requestId: string;
  /** The verified caller as an assertion signed by the gateway for the upstream service. */
  assertion: string | undefined;
}

/**
 * The headers every attempt of a call sends upstream: the client's, less hop-by-hop ones, its
 * deadline (the gateway sends what is left of it per attempt) and any identity headers or
 * assertion of its own (only the gateway says who the caller is), plus the gateway's assertion
 * of the verified identity.
 */
export function upstreamHeaders(
  headers: http2.IncomingHttpHeaders,
  call: UpstreamRequest,
): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  // for-in, not Object.entries: no array of pairs per call (the header objects have no inherited keys).
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || k.charCodeAt(0) === 58 /* : */ || HOP_BY_HOP.has(k) || IDENTITY.has(k)) continue;
    // Left out here, not deleted after: a delete turns the object into a hash table, slower for
    // Node to copy and encode on every attempt.
    if (DEADLINE.has(k)) continue;
    // HTTP/2 allows `te` only as `trailers` (what gRPC sends); an HTTP/1.1 client's other
    // transfer codings mean nothing upstream.
    if (k === "te" && v !== "trailers") continue;
    out[k] = v;
  }
  if (call.assertion) out[ASSERTION_HEADER] = call.assertion;
  out[":method"] = call.method;
  out[":path"] = call.path;
  out[":scheme"] = "http";
  out["x-request-id"] = call.requestId;
  out["x-forwarded-host"] = String(headers[":authority"] ?? headers.host ?? "");
  return out;
}

/** One attempt's headers: the call's, its endpoint's authority, and what is left of the deadline. */
export function attemptHeaders(
  base: http2.OutgoingHttpHeaders,
  authority: string,
  protocol: Protocol,
  remainingMs: number,
): http2.OutgoingHttpHeaders {
  return setAttempt({ ...base }, authority, protocol, remainingMs);
}

/**
 * Sets an attempt's authority and what is left of the deadline on `out` itself: the first
 * attempt's headers are the call's own object, with no copy (Node's `request` copies them
 * anyway); a retry takes a copy ({@link attemptHeaders}) and sets the same keys again.
 */
export function setAttempt(
  out: http2.OutgoingHttpHeaders,
  authority: string,
  protocol: Protocol,
  remainingMs: number,
): http2.OutgoingHttpHeaders {
  out[":authority"] = authority;
  // In the client's protocol, at least 1 ms.
  const remaining = Math.max(1, Math.round(remainingMs));
  if (protocol === "connect" || protocol === "connect-stream") out["connect-timeout-ms"] = String(remaining);
  else out["grpc-timeout"] = `${remaining}m`;
  return out;
}

/** An upstream answer's headers as the client gets them: no hop-by-hop ones, the request id added. */
export function answerHeaders(h: http2.IncomingHttpHeaders, requestId: string): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const k in h) {
    const v = h[k];
    if (v === undefined || HOP_BY_HOP.has(k) || (k.charCodeAt(0) === 58 && k !== ":status")) continue;
    out[k] = v;
  }
  out["x-request-id"] = requestId;
  return out;
}

/** An upstream answer's trailers as the client gets them (no pseudo-headers). */
export function answerTrailers(t: http2.IncomingHttpHeaders | undefined): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  if (t === undefined) return out;
  for (const k in t) {
    const v = t[k];
    if (v !== undefined && k.charCodeAt(0) !== 58) out[k] = v;
  }
  return out;
}

/** A gRPC answer (not gRPC-Web): one that must end with trailers. */
export function isGrpcAnswer(h: http2.IncomingHttpHeaders): boolean {
  const contentType = String(h["content-type"] ?? "");
  return contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web");
}

/** Any answer's headers plus what a browser at an allowed origin needs to read it. */
export function withCors(h: http2.OutgoingHttpHeaders, origin: string): http2.OutgoingHttpHeaders {
  return {
    ...h,
    "access-control-allow-origin": origin,
    "access-control-expose-headers": CORS_EXPOSE_HEADERS,
    vary: "Origin",
  };
}
