import http from "node:http";
import type http2 from "node:http2";
import type { DescFile, JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Logger } from "@meshwork/telemetry";
import type { Downstream } from "../proxy/downstream.js";
import { BufferedDownstream } from "./buffered-downstream.js";
import { type RouteState, RouteStats, type Side, sideOf } from "./cutover.js";
import { diffJson } from "./diff.js";
import { findHttpRoute, type HttpRoute, httpRoutesOf } from "./http-rules.js";
import { LegacySessions, legacySessionOf } from "./legacy-sessions.js";
import { buildRequest, printResponse, restError, restErrorOf, TranscodeError } from "./transcode.js";

/**
 * Fields that differ between the two sides by nature, skipped by every comparison: times, the
 * tokens each side issues and signs, error wording, page tokens (each side's own cursor).
 */
export const DEFAULT_IGNORE = [
  "**.create_time",
  "**.update_time",
  "**.expire_time",
  // A product's version (what the caches compare) exists on the new side only.
  "**.version",
  "access_token",
  "message",
  "next_page_token",
];

/** A route's initial state from configuration (`STRANGLER_ROUTES`). */
export interface RouteSetting {
  weight?: number;
  shadow?: boolean;
  ignore?: string[];
}

export interface StranglerOptions {
  files: readonly DescFile[];
  /** The monolith's base URL; without it every transcoded route is served by the new services. */
  legacyUrl: string | undefined;
  /** Paths under this prefix belong to the legacy API (`/api/`). */
  prefix: string;
  routes: ReadonlyMap<string, RouteSetting>;
  maxRequestBytes: number;
  /** Runs a call through the gateway's proxy (auth, policy, limits, retries, balancing). */
  dispatch(down: Downstream): void;
  logger: Logger;
}

/** A whole REST answer from either side. */
interface RestAnswer {
  status: number;
  contentType: string;
  body: Buffer;
  /** The new side could not serve this caller yet (a legacy session not exchangeable): ask legacy. */
  fallback?: boolean;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "host",
  "content-length",
]);

/** The `mw_sticky` cookie: the sticky key of a client without a token (a browser session). */
function stickyCookieOf(cookie: string | string[] | undefined): string | undefined {
  const text = Array.isArray(cookie) ? cookie.join("; ") : cookie;
  const m = text ? /(?:^|;\s*)mw_sticky=([^;]+)/.exec(text) : null;
  return m?.[1];
}

/** The `sub` of a bearer JWT, unverified: it only picks a side (authorization happens upstream). */
function subjectOf(authorization: string | undefined): string | undefined {
  if (!authorization?.startsWith("Bearer ")) return undefined;
  const payload = authorization.slice(7).split(".")[1];
  if (!payload) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { sub?: unknown }).sub;
    return typeof sub === "string" && sub ? sub : undefined;
  } catch {
    return undefined;
  }
}

function json(status: number, body: unknown): RestAnswer {
  return { status, contentType: "application/json; charset=utf-8", body: Buffer.from(JSON.stringify(body)) };
}

function parseBody(answer: RestAnswer): JsonValue {
  try {
    return JSON.parse(answer.body.toString("utf8")) as JsonValue;
  } catch {
    return answer.body.toString("utf8");
  }
}

/** A change to a route's state; each field optional. */
export interface RoutePatch {
  weight?: unknown;
  shadow?: unknown;
  ignore?: unknown;
}

/**
 * The strangler fig at the edge: the legacy REST API's routes, each answered by the monolith or
 * (transcoded from the method's `google.api.http` rule) by the new service that replaces it, by
 * a weight sticky per user; shadowed routes also call the new service and compare its answer
 * with legacy's, which alone the client sees.
 */
export class Strangler {
  readonly #options: StranglerOptions;
  readonly #http: HttpRoute[];
  readonly states = new Map<string, RouteState>();
  readonly stats = new Map<string, RouteStats>();
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  readonly #legacy: URL | undefined;
  /** Old clients' legacy sessions traded for mesh tokens on routes the new services answer. */
  readonly sessions: LegacySessions;

  constructor(options: StranglerOptions) {
    this.#options = options;
    this.sessions = new LegacySessions(options.dispatch);
    this.#legacy = options.legacyUrl ? new URL(options.legacyUrl) : undefined;
    this.#http = httpRoutesOf(options.files).filter((r) => r.template.startsWith(options.prefix));
    for (const route of this.#http) {
      const setting = options.routes.get(route.name) ?? {};
      this.states.set(route.name, {
        name: route.name,
        pattern: `${route.verb} ${route.template}`,
        // With a monolith, everything starts there; without one, the new services answer.
        weight: setting.weight ?? (this.#legacy ? 0 : 100),
        shadow: (setting.shadow ?? false) && route.safe,
        ignore: setting.ignore ?? [...DEFAULT_IGNORE],
        transcoded: true,
        shadowable: route.safe,
      });
      this.stats.set(route.name, new RouteStats());
    }
    for (const name of options.routes.keys()) {
      if (!this.states.has(name))
        throw new Error(`STRANGLER_ROUTES: no method named ${name} has a REST rule`);
    }
    this.states.set("legacy-only", {
      name: "legacy-only",
      pattern: `* ${options.prefix}** (no method declares it)`,
      weight: 0,
      shadow: false,
      ignore: [],
      transcoded: false,
      shadowable: false,
    });
    this.stats.set("legacy-only", new RouteStats());
  }

  get legacyUrl(): string | undefined {
    return this.#legacy?.toString();
  }

  /** Whether a request path belongs to the legacy API. */
  handles(path: string | undefined): boolean {
    return path?.startsWith(this.#options.prefix) === true;
  }

  /** Changes a route at run time; returns the new state or a refusal with its HTTP status. */
  update(
    name: string,
    patch: RoutePatch,
  ): { ok: true; state: RouteState } | { ok: false; status: number; message: string } {
    const state = this.states.get(name);
    if (!state?.transcoded) {
      return {
        ok: false,
        status: 404,
        message: `no route ${name} (routes: ${[...this.#http.map((r) => r.name)].join(", ")})`,
      };
    }
    const next = { ...state };
    if (patch.weight !== undefined) {
      const w = typeof patch.weight === "string" ? Number(patch.weight) : patch.weight;
      if (typeof w !== "number" || !Number.isInteger(w) || w < 0 || w > 100) {
        return {
          ok: false,
          status: 400,
          message: `weight: must be an integer from 0 to 100, got ${JSON.stringify(patch.weight)}`,
        };
      }
      if (w > 0 && !this.#legacy && w !== 100) {
        return {
          ok: false,
          status: 400,
          message: "weight: no legacy URL is configured, so every route is at 100",
        };
      }
      next.weight = w;
    }
    if (patch.shadow !== undefined) {
      const s = patch.shadow === "on" ? true : patch.shadow === "off" ? false : patch.shadow;
      if (typeof s !== "boolean")
        return { ok: false, status: 400, message: "shadow: must be true, false, on or off" };
      if (s && !state.shadowable) {
        return {
          ok: false,
          status: 409,
          message: `shadow: ${state.pattern} has side effects; shadowing it would run each request twice (cut it over by weight instead)`,
        };
      }
      if (s && !this.#legacy)
        return { ok: false, status: 409, message: "shadow: no legacy URL is configured" };
      next.shadow = s;
    }
    if (patch.ignore !== undefined) {
      if (!Array.isArray(patch.ignore) || !patch.ignore.every((r) => typeof r === "string" && r.length > 0)) {
        return {
          ok: false,
          status: 400,
          message: "ignore: must be a list of dotted field paths (globs * and **)",
        };
      }
      next.ignore = patch.ignore as string[];
    }
    this.states.set(name, next);
    this.#options.logger.info(
      { route: name, weight: next.weight, shadow: next.shadow, ignore: next.ignore },
      "strangler route changed",
    );
    return { ok: true, state: next };
  }

  /** Forgets a route's counters and samples. */
  reset(name: string): boolean {
    if (!this.stats.has(name)) return false;
    this.stats.set(name, new RouteStats());
    return true;
  }

  /** A request on the legacy API, from the public listener (HTTP/1.1 or HTTP/2). */
  handle(
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ): void {
    this.#serve(req, res).catch((err: unknown) => {
      this.#options.logger.error({ err }, "strangler route failed");
      if (!res.headersSent)
        this.#send(res, json(500, restError(Code.Internal, "internal error").body), undefined);
      else res.destroy();
    });
  }

  async #serve(
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway");
    const body = await this.#readBody(req);
    if (body === undefined) {
      const e = restError(
        Code.ResourceExhausted,
        `the request body exceeds ${this.#options.maxRequestBytes} bytes`,
      );
      this.#send(res, json(413, e.body), undefined);
      return;
    }
    const found = findHttpRoute(this.#http, req.method ?? "GET", url.pathname);
    const started = performance.now();
    if (!found) {
      const stats = this.stats.get("legacy-only")!;
      if (!this.#legacy) {
        this.#send(
          res,
          json(404, restError(Code.NotFound, `no route ${req.method} ${url.pathname}`).body),
          undefined,
        );
        return;
      }
      const answer = await this.#callLegacy(req, url, body);
      stats.record("legacy", performance.now() - started);
      this.#send(res, answer, "legacy");
      return;
    }
    const { route, vars } = found;
    const state = this.states.get(route.name)!;
    const stats = this.stats.get(route.name)!;
    // Sticky per user: the token's subject, else the browser's sticky cookie, else the address.
    const key =
      subjectOf(req.headers.authorization) ??
      stickyCookieOf(req.headers.cookie) ??
      req.socket.remoteAddress ??
      "anonymous";
    const side: Side = this.#legacy ? sideOf(route.name, key, state.weight) : "new";
    if (side === "new") {
      const answer = await this.#callNew(req, route, vars, url, body);
      if (answer.fallback && this.#legacy) {
        // A legacy user the mesh cannot serve yet keeps being served where they were.
        const old = await this.#callLegacy(req, url, body);
        stats.fallbacks++;
        stats.record("legacy", performance.now() - started);
        this.#send(res, old, "legacy");
        return;
      }
      stats.record("new", performance.now() - started);
      this.#send(res, answer, "new");
      return;
    }
    // Legacy answers; a shadowed route also calls the new service, at the same time, and the
    // comparison runs after the client has its answer.
    const shadowed = state.shadow
      ? this.#callNew(req, route, vars, url, body).then((a) => ({ a, at: performance.now() }))
      : undefined;
    const answer = await this.#callLegacy(req, url, body);
    stats.record("legacy", performance.now() - started);
    this.#send(res, answer, "legacy");
    if (shadowed) {
      shadowed.then(
        ({ a, at }) => {
          const diffs = [
            ...(a.status !== answer.status
              ? [{ path: "(status)", legacy: answer.status, new: a.status }]
              : []),
            ...diffJson(parseBody(answer), parseBody(a), state.ignore),
          ];
          stats.compared(`${req.method} ${url.pathname}${url.search}`, diffs, at - started);
        },
        () => {
          stats.shadow.failed++;
        },
      );
    }
  }

  #readBody(req: http.IncomingMessage | http2.Http2ServerRequest): Promise<Buffer | undefined> {
    const limit = this.#options.maxRequestBytes;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > limit) over = true;
        else chunks.push(c);
      });
      req.once("end", () => resolve(over ? undefined : Buffer.concat(chunks)));
      req.once("error", reject);
    });
  }

  /** Forwards the request to the monolith as it came (hop-by-hop headers dropped). */
  #callLegacy(
    req: http.IncomingMessage | http2.Http2ServerRequest,
    url: URL,
    body: Buffer,
  ): Promise<RestAnswer> {
    const legacy = this.#legacy!;
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (!k.startsWith(":") && !HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    }
    if (body.length > 0) headers["content-length"] = body.length;
    headers["x-forwarded-for"] = req.socket.remoteAddress ?? "";
    return new Promise((resolve) => {
      const out = http.request(
        {
          protocol: legacy.protocol,
          hostname: legacy.hostname,
          port: legacy.port,
          method: req.method,
          path: url.pathname + url.search,
          headers,
          agent: this.#agent,
          timeout: 30_000,
        },
        (answer) => {
          const chunks: Buffer[] = [];
          answer.on("data", (c: Buffer) => chunks.push(c));
          answer.once("end", () =>
            resolve({
              status: answer.statusCode ?? 502,
              contentType: String(answer.headers["content-type"] ?? "application/json; charset=utf-8"),
              body: Buffer.concat(chunks),
            }),
          );
          answer.once("error", () =>
            resolve(json(502, restError(Code.Unavailable, "legacy broke off its answer").body)),
          );
        },
      );
      out.once("timeout", () => out.destroy(new Error("timeout")));
      out.once("error", (err) =>
        resolve(json(503, restError(Code.Unavailable, `legacy is unavailable: ${err.message}`).body)),
      );
      out.end(body);
    });
  }

  /** Transcodes the request into the route's RPC and runs it through the proxy. */
  async #callNew(
    req: http.IncomingMessage | http2.Http2ServerRequest,
    route: HttpRoute,
    vars: Map<string, string>,
    url: URL,
    body: Buffer,
  ): Promise<RestAnswer> {
    let message: Uint8Array;
    try {
      message = buildRequest(route, vars, url.searchParams, body);
    } catch (err) {
      if (err instanceof TranscodeError) return json(400, restError(Code.InvalidArgument, err.message).body);
      throw err;
    }
    const headers: http2.IncomingHttpHeaders = {
      ":method": "POST",
      ":path": route.rpcPath,
      ":authority": "gateway",
      "content-type": "application/proto",
      "connect-protocol-version": "1",
    };
    for (const name of ["authorization", "traceparent", "tracestate", "x-request-id", "connect-timeout-ms"]) {
      const v = req.headers[name];
      if (typeof v === "string") headers[name] = v;
    }
    // An old client's legacy session: the new service gets the same user's mesh identity.
    const session = legacySessionOf(req.headers.authorization);
    if (session) {
      const trace: http2.IncomingHttpHeaders = {};
      for (const name of ["traceparent", "tracestate", "x-request-id"] as const)
        if (headers[name] !== undefined) trace[name] = headers[name];
      const x = await this.sessions.exchange(
        session.token,
        session.expMs,
        req.socket.remoteAddress ?? "unknown",
        trace,
      );
      if (!x.ok) return { ...json(x.status, x.body), fallback: x.notExchangeable === true };
      headers.authorization = x.authorization;
    }
    const down = new BufferedDownstream(headers, message, req.socket.remoteAddress ?? "unknown");
    this.#options.dispatch(down);
    const answer = await down.answer;
    if (answer.reset) return json(502, restError(Code.Unavailable, "the upstream broke off its answer").body);
    if (answer.status === 200) return json(200, printResponse(route, answer.body));
    const e = restErrorOf(answer.status, answer.body);
    return json(e.status, e.body);
  }

  #send(
    res: http.ServerResponse | http2.Http2ServerResponse,
    answer: RestAnswer,
    side: Side | undefined,
  ): void {
    const headers: http.OutgoingHttpHeaders = {
      "content-type": answer.contentType,
      "content-length": answer.body.length,
    };
    // Which side answered, for operators and tests; old clients ignore an unknown header.
    if (side) headers["x-meshwork-side"] = side;
    (res as http.ServerResponse).writeHead(answer.status, headers);
    res.end(answer.body);
  }

  /** The status of every route, as `meshctl strangler status` shows it. */
  status(): Record<string, unknown> {
    return {
      legacy: this.legacyUrl ?? null,
      routes: [...this.states.values()].map((s) => {
        const st = this.stats.get(s.name)!;
        const total = st.requests.legacy + st.requests.new;
        return {
          ...s,
          requests: st.requests,
          fallbacks: st.fallbacks,
          share_new: total === 0 ? null : st.requests.new / total,
          latency_ms: {
            legacy: { p50: st.latency.legacy.quantile(0.5), p95: st.latency.legacy.quantile(0.95) },
            new: { p50: st.latency.new.quantile(0.5), p95: st.latency.new.quantile(0.95) },
            shadow: { p50: st.shadow.latency.quantile(0.5), p95: st.shadow.latency.quantile(0.95) },
          },
          shadow_stats: {
            compared: st.shadow.compared,
            differed: st.shadow.differed,
            failed: st.shadow.failed,
            diff_rate: st.shadow.compared === 0 ? null : st.shadow.differed / st.shadow.compared,
          },
        };
      }),
    };
  }

  /** The counted differing fields and the sampled differences of one route. */
  diffs(name: string): Record<string, unknown> | undefined {
    const st = this.stats.get(name);
    if (!st) return undefined;
    return {
      route: name,
      compared: st.shadow.compared,
      differed: st.shadow.differed,
      fields: Object.fromEntries([...st.fields].sort((a, b) => b[1] - a[1])),
      samples: st.samples,
    };
  }

  close(): void {
    this.#agent.destroy();
  }
}
