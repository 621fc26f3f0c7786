import type http2 from "node:http2";
import { cors } from "@connectrpc/connect";
import { requestTimeout } from "@meshwork/telemetry";
import type { Identity, Policy } from "../auth.js";
import { Code } from "../errors.js";
import { type RateLimiter, rateRefusal } from "../ratelimit.js";
import type { Route } from "../routes.js";
import { CORS_ALLOW_HEADERS } from "./headers.js";

/** Why a call is answered by the gateway itself instead of forwarded. */
export interface Refusal {
  ok: false;
  code: Code;
  message: string;
  headers?: Record<string, string>;
  /** An HTTP status of its own instead of the code's (a Connect GET to a method with side effects: 405). */
  httpStatus?: number;
}

/** A call that may go on to authorization: its access policy and deadline. */
export interface Admitted {
  ok: true;
  policy: Policy;
  deadlineMs: number;
}

/** The call's origin when CORS allows it (every answer to it then carries CORS headers). */
export function corsOriginOf(
  headers: http2.IncomingHttpHeaders,
  corsOrigins: readonly string[],
): string | undefined {
  const origin = headers.origin;
  if (typeof origin !== "string") return undefined;
  return corsOrigins.includes("*") || corsOrigins.includes(origin) ? origin : undefined;
}

/** A browser's CORS preflight, answered by the gateway (204, or 403 for an origin not allowed) rather than forwarded. */
export function isPreflight(method: string, headers: http2.IncomingHttpHeaders): boolean {
  return method === "OPTIONS" && headers["access-control-request-method"] !== undefined;
}

/** The headers of a preflight's answer: what may be sent, for an allowed origin; none otherwise. */
export function preflightHeaders(allowed: boolean): http2.OutgoingHttpHeaders {
  if (!allowed) return {};
  return {
    "access-control-allow-methods": cors.allowedMethods.join(", "),
    "access-control-allow-headers": CORS_ALLOW_HEADERS,
    "access-control-max-age": "7200",
  };
}

/** The call's deadline in ms: the client's, capped, or the default; an error for a malformed one. */
export function deadlineOf(
  headers: http2.IncomingHttpHeaders,
  defaultMs: number,
  maxMs: number,
): { ms: number; error?: string } {
  const t = requestTimeout(
    headers["grpc-timeout"] as string | undefined,
    headers["connect-timeout-ms"] as string | undefined,
  );
  if (t.error) return { ms: 0, error: t.error };
  return { ms: Math.min(t.ms ?? defaultMs, maxMs) };
}

/** What admission reads of the gateway's configuration. */
export interface AdmissionRules {
  policies: ReadonlyMap<string, Policy>;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
}

/**
 * A request method other than POST: only Connect GET to a unary method without side effects
 * (NO_SIDE_EFFECTS) is let through, as the services' Connect handlers do; anything else is
 * refused here with their answer, HTTP 405 and `allow: POST`, before authorization.
 */
function methodRefusal(route: Route, method: string, pathKey: string): Refusal | undefined {
  if (method === "POST") return undefined;
  const name = pathKey.slice(pathKey.lastIndexOf("/") + 1);
  if (method === "GET" && route.getAllowed.has(name)) return undefined;
  const message =
    method === "GET"
      ? `${pathKey} has side effects: it takes POST, not GET (GET is for methods marked NO_SIDE_EFFECTS)`
      : `${pathKey} takes POST, not ${method}`;
  return { ok: false, code: Code.Unimplemented, message, headers: { allow: "POST" }, httpStatus: 405 };
}

/**
 * gRPC-Web's text mode (base64 bodies): no service reads it (connect-node serves binary gRPC-Web
 * only and answers a bare HTTP 415, which clients read as UNKNOWN), so it is UNIMPLEMENTED here.
 */
const GRPC_WEB_TEXT_UNSUPPORTED =
  "gRPC-Web text (application/grpc-web-text, base64) is not supported: send application/grpc-web+proto";

/**
 * The checks before authorization, in order: a route for the path, a well-formed deadline, a
 * known method (one with an access policy), a request method it takes (POST, or GET without side
 * effects), a content type the services read (not gRPC-Web text).
 */
export function admit(
  rules: AdmissionRules,
  route: Route | undefined,
  path: string,
  pathKey: string,
  headers: http2.IncomingHttpHeaders,
): Admitted | Refusal {
  if (!route) return { ok: false, code: Code.Unimplemented, message: `no route for ${path}` };
  const deadline = deadlineOf(headers, rules.defaultTimeoutMs, rules.maxTimeoutMs);
  if (deadline.error) return { ok: false, code: Code.InvalidArgument, message: deadline.error };
  const policy = rules.policies.get(pathKey);
  if (!policy) return { ok: false, code: Code.Unimplemented, message: `unknown method ${path}` };
  const refused = methodRefusal(route, String(headers[":method"] ?? "GET"), pathKey);
  if (refused) return refused;
  if (String(headers["content-type"] ?? "").startsWith("application/grpc-web-text"))
    return { ok: false, code: Code.Unimplemented, message: GRPC_WEB_TEXT_UNSUPPORTED };
  return { ok: true, policy, deadlineMs: deadline.ms };
}

/**
 * The rate limit after authorization: per verified subject, else per client address; always per
 * address for the authentication methods (see `RateLimiter.takeForCall`).
 */
export function rateLimit(
  limiter: RateLimiter,
  pathKey: string,
  identity: Identity | undefined,
  remoteAddress: string,
): Refusal | undefined {
  const limit = limiter.takeForCall(pathKey, identity?.subject, remoteAddress);
  if (limit.allowed) return undefined;
  const refusal = rateRefusal(limit);
  return { ok: false, code: Code.ResourceExhausted, message: refusal.message, headers: refusal.headers };
}
