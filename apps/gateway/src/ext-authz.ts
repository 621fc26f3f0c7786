import http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  type HeaderValueOption,
  HeaderValueOption_HeaderAppendAction,
  HeaderValueOptionSchema,
} from "@meshwork/contracts/envoy/config/core/v3/base";
import type { AttributeContext_HttpRequest } from "@meshwork/contracts/envoy/service/auth/v3/attribute_context";
import {
  Authorization,
  type CheckRequest,
  type CheckResponse,
  CheckResponseSchema,
} from "@meshwork/contracts/envoy/service/auth/v3/external_auth";
import { StatusCode } from "@meshwork/contracts/envoy/type/v3/http_status";
import { ASSERTION_HEADER, type AssertionSigner } from "@meshwork/runtime";
import type { Logger } from "@meshwork/telemetry";
import type { Authenticator, Policy } from "./auth.js";
import { type AdmissionRules, admit, type Refusal, rateLimit } from "./proxy/admission.js";
import type { RateLimiter } from "./ratelimit.js";
import { matchRoute, type Route } from "./routes.js";
import { type ExchangeOutcome, type LegacySessions, legacySessionOf } from "./strangler/legacy-sessions.js";
import { SIDE_HEADER, SIDE_QUESTION } from "./strangler/side-question.js";

/**
 * What Envoy needs to be the edge of a zero-trust mesh: services accept a caller only in an
 * identity assertion signed by a key they trust, and Envoy cannot sign one. Envoy's `ext_authz`
 * filter asks this server (`envoy.service.auth.v3.Authorization/Check`, gRPC) about every call
 * before it is routed; the answer applies the very rules of the Node gateway, from the same code:
 * the method's access policy from the contracts, the bearer token verified against the users
 * service's JWKS (issuer, audience, `exp`, `iat` not in the future, the longest lifetime), the
 * per-subject / per-address rate limits, a malformed deadline refused. An allowed call gets the
 * gateway's assertion for its upstream service (audience-bound) as `x-meshwork-identity`,
 * which Envoy adds to the request it forwards; a refused one gets the HTTP status Envoy answers
 * with (gRPC clients see the code Envoy maps it to: 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 * 429 UNAVAILABLE, 404 UNIMPLEMENTED).
 */
export interface ExtAuthzOptions {
  routes: ReadonlyMap<string, Route>;
  rules: AdmissionRules;
  auth: Authenticator;
  assert: AssertionSigner;
  limiter: RateLimiter;
  logger: Logger;
  /**
   * The strangler's legacy-session exchange (the Node gateway's own, so one cache serves both):
   * a call Envoy transcoded from the legacy REST API that carries a legacy session gets the
   * same user's mesh token as its `authorization`, and the side question (`SIDE_QUESTION`) sends
   * a session of a user the mesh cannot hold yet to legacy; absent, legacy sessions are refused.
   */
  sessions?: LegacySessions;
}

/**
 * The path of the legacy REST API Envoy's grpc_json_transcoder rewrote into this RPC (it sets
 * `x-envoy-original-path`; the edge drops a client's own first): only such calls, the routes the
 * new side answers, have their legacy session exchanged, as through the Node gateway.
 */
const ORIGINAL_PATH = "x-envoy-original-path";
const REST_PREFIX = "/api/";

/** The HTTP status Envoy answers a refused call with, per code (Connect's mapping, as the Node gateway's). */
const HTTP_STATUS: Partial<Record<Code, StatusCode>> = {
  [Code.InvalidArgument]: StatusCode.BadRequest,
  [Code.Unauthenticated]: StatusCode.Unauthorized,
  [Code.PermissionDenied]: StatusCode.Forbidden,
  [Code.Unimplemented]: StatusCode.NotFound,
  [Code.ResourceExhausted]: StatusCode.TooManyRequests,
  [Code.Unavailable]: StatusCode.ServiceUnavailable,
  [Code.DeadlineExceeded]: StatusCode.GatewayTimeout,
};

function header(key: string, value: string): HeaderValueOption {
  return create(HeaderValueOptionSchema, {
    header: { key, value },
    appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
  });
}

/** The request's headers as Node's `IncomingHttpHeaders` (lower-case names, pseudo-headers too). */
function headersOf(http: AttributeContext_HttpRequest): http2.IncomingHttpHeaders {
  const out: Record<string, string> = {};
  // Envoy sends `headers`, or `header_map` when its `encode_raw_headers` is on.
  for (const [k, v] of Object.entries(http.headers)) out[k.toLowerCase()] = v;
  for (const h of http.headerMap?.headers ?? []) {
    const v = h.value || Buffer.from(h.rawValue).toString("latin1");
    const k = h.key.toLowerCase();
    out[k] = k in out ? `${out[k]},${v}` : v;
  }
  out[":method"] = http.method || out[":method"] || "";
  out[":path"] = http.path || out[":path"] || "";
  return out;
}

function refused(refusal: Refusal): CheckResponse {
  return create(CheckResponseSchema, {
    status: { code: refusal.code, message: refusal.message },
    httpResponse: {
      case: "deniedResponse",
      value: {
        status: { code: refusal.httpStatus ?? HTTP_STATUS[refusal.code] ?? StatusCode.Forbidden },
        headers: Object.entries(refusal.headers ?? {}).map(([k, v]) => header(k, v)),
        body: refusal.message,
      },
    },
  });
}

/** A failed exchange as the old REST client expects it: legacy's status and JSON error shape. */
function refusedRest(x: Extract<ExchangeOutcome, { ok: false }>): CheckResponse {
  const name = String(x.body.error ?? "unknown").replace(/(^|_)([a-z])/g, (_m, _u, c: string) =>
    c.toUpperCase(),
  );
  const code = (Code as unknown as Record<string, number>)[name] ?? Code.Unknown;
  return create(CheckResponseSchema, {
    status: { code, message: String(x.body.message ?? "") },
    httpResponse: {
      case: "deniedResponse",
      value: {
        status: { code: x.status as StatusCode },
        headers: [header("content-type", "application/json")],
        body: JSON.stringify(x.body),
      },
    },
  });
}

/** An OK that adds these headers to the call (none: it goes on as it is). */
function allowed(headers: HeaderValueOption[]): CheckResponse {
  return create(CheckResponseSchema, {
    status: { code: 0 },
    httpResponse: { case: "okResponse", value: { headers } },
  });
}

/**
 * The exchange of the legacy session in `authorization` (its outcome), or undefined when there
 * is none to exchange (no strangler, no legacy session).
 */
function exchangeSession(
  sessions: LegacySessions | undefined,
  headers: http2.IncomingHttpHeaders,
  remote: string,
): Promise<ExchangeOutcome> | undefined {
  const session = sessions && legacySessionOf(headers.authorization as string | undefined);
  if (!sessions || !session) return undefined;
  const trace: http2.IncomingHttpHeaders = {};
  for (const name of ["traceparent", "tracestate", "x-request-id"])
    if (typeof headers[name] === "string") trace[name] = headers[name];
  return sessions.exchange(session.token, session.expMs, remote, trace);
}

/**
 * The mesh authorization for a call Envoy transcoded from the legacy REST API with a legacy
 * session (the exchange's outcome), or undefined when the call has none to exchange.
 */
function exchangeLegacySession(
  sessions: LegacySessions | undefined,
  headers: http2.IncomingHttpHeaders,
  remote: string,
): Promise<ExchangeOutcome> | undefined {
  const original = headers[ORIGINAL_PATH];
  if (typeof original !== "string" || !original.startsWith(REST_PREFIX)) return undefined;
  return exchangeSession(sessions, headers, remote);
}

/**
 * The side question, on a REST call still untranscoded, routed to the new side: the Node
 * gateway's rule. A legacy session of a user the mesh cannot hold yet (the exchange answers
 * FAILED_PRECONDITION) is sent to legacy (`x-meshwork-side: legacy`); any other caller goes on
 * as it is (no session, a mesh token, an exchanged session: the Check after the transcoder then
 * finds that exchange in the cache). A session the exchange refuses otherwise (bad or expired:
 * 401, locked out: 429, users unavailable: 503) gets that REST error at once, in legacy's JSON
 * shape, as the Node gateway answers it (only FAILED_PRECONDITION falls back there too); failures
 * are not cached, so letting the call on to the Check after the transcoder would only ask the
 * users service a second time for the same answer.
 */
async function answerSide(
  sessions: LegacySessions | undefined,
  headers: http2.IncomingHttpHeaders,
  path: string,
  remote: string,
): Promise<CheckResponse> {
  const exchanged = path.startsWith(REST_PREFIX) ? exchangeSession(sessions, headers, remote) : undefined;
  const outcome = await exchanged;
  if (!outcome || outcome.ok) return allowed([]);
  if (outcome.notExchangeable) return allowed([header(SIDE_HEADER, "legacy")]);
  return refusedRest(outcome);
}

/** Decides one call: the Check of Envoy's ext_authz. */
export function createExtAuthz(options: ExtAuthzOptions) {
  const { routes, rules, auth, assert, limiter } = options;
  return async function check(req: CheckRequest): Promise<CheckResponse> {
    const http = req.attributes?.request?.http;
    if (!http?.path) {
      throw new ConnectError(
        "attributes.request.http.path is required (the call to authorize)",
        Code.InvalidArgument,
      );
    }
    const headers = headersOf(http);
    const path = http.path;
    const address = req.attributes?.source?.address?.address;
    const remote = address?.case === "socketAddress" ? address.value.address : "";
    if (req.attributes?.contextExtensions[SIDE_QUESTION.key] === SIDE_QUESTION.value)
      return answerSide(options.sessions, headers, path, remote);
    const pathKey = path.split("?", 1)[0] ?? path;
    const route = matchRoute(routes, pathKey);
    const admitted = admit(rules, route, path, pathKey, headers);
    if (!admitted.ok) return refused(admitted);
    const policy: Policy = admitted.policy;
    // A legacy session on a REST route the new side answers: the same user's mesh token replaces
    // it (Envoy's jwt_authn, after this filter, then verifies that token). A user the mesh cannot
    // hold yet was sent to legacy by the side question before the transcoder; should the exchange
    // answer FAILED_PRECONDITION here all the same (a config without that filter, or a user whose
    // sync broke in between), the REST error is the answer.
    const exchanged = await exchangeLegacySession(options.sessions, headers, remote);
    if (exchanged && !exchanged.ok) return refusedRest(exchanged);
    const authorization = exchanged?.authorization ?? (headers.authorization as string | undefined);
    const result = await auth.authorize(policy, authorization);
    if (!result.ok) return refused({ ok: false, code: result.code, message: result.message });
    const limited = rateLimit(limiter, pathKey, result.identity, remote);
    if (limited) return refused(limited);
    const cluster = (route as Route).cluster;
    return allowed([
      ...(exchanged ? [header("authorization", authorization as string)] : []),
      // Anonymous calls (public methods) go on without one, as through the Node gateway.
      ...(result.identity ? [header(ASSERTION_HEADER, assert.sign(result.identity, cluster))] : []),
    ]);
  };
}

/** The ext_authz gRPC server (h2c), for Envoy only: bind it where clients cannot reach it. */
export function createExtAuthzServer(options: ExtAuthzOptions): http2.Http2Server {
  const check = createExtAuthz(options);
  const handler = connectNodeAdapter({
    grpc: true,
    grpcWeb: false,
    connect: false,
    routes(router: ConnectRouter) {
      router.service(Authorization, {
        async check(req) {
          try {
            return await check(req);
          } catch (err) {
            if (err instanceof ConnectError) throw err;
            options.logger.error({ err }, "ext_authz check failed");
            throw new ConnectError("authorization failed", Code.Internal);
          }
        },
      });
    },
  });
  return http2.createServer(handler);
}
