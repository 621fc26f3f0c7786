import type http2 from "node:http2";
import { create, fromBinary, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import {
  ExchangeLegacyTokenRequestSchema,
  ExchangeLegacyTokenResponseSchema,
} from "@meshwork/contracts/meshwork/users/v1/users";
import type { Downstream } from "../proxy/downstream.js";
import { BufferedDownstream } from "./buffered-downstream.js";
import { restError, restErrorOf } from "./transcode.js";

const EXCHANGE_PATH = "/meshwork.users.v1.UserService/ExchangeLegacyToken";
/** A cached mesh token is dropped this long before it (or the legacy session) expires. */
const EXPIRY_SLACK_MS = 5_000;

/** The exchange's outcome: the mesh `authorization` header, or the REST error the client gets. */
export type ExchangeOutcome =
  | { ok: true; authorization: string }
  | { ok: false; status: number; body: JsonObject; notExchangeable?: boolean };

/** The legacy session in a bearer header (a JWT with issuer `legacy`), unverified; else undefined. */
export function legacySessionOf(
  authorization: string | undefined,
): { token: string; expMs: number } | undefined {
  if (!authorization?.startsWith("Bearer ")) return undefined;
  const token = authorization.slice(7).trim();
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as {
      iss?: unknown;
      exp?: unknown;
    };
    if (claims.iss !== "legacy") return undefined;
    return { token, expMs: typeof claims.exp === "number" ? claims.exp * 1000 : 0 };
  } catch {
    return undefined;
  }
}

/**
 * An old REST client's legacy session, traded for a mesh token when its route is served by the
 * new services (UserService.ExchangeLegacyToken, through the gateway's own proxy: its rate limit
 * and policy apply). The users service verifies the session; the gateway only recognises its
 * issuer. Answers are cached per session token until the earlier of the two expiries, at most
 * `maxEntries` (the oldest entry goes first); failures are not cached, so a session refused
 * while its user was not synced yet is exchanged once it is.
 */
export class LegacySessions {
  readonly #cache = new Map<string, { authorization: string; untilMs: number }>();
  readonly #inflight = new Map<string, Promise<ExchangeOutcome>>();

  constructor(
    private readonly dispatch: (down: Downstream) => void,
    private readonly maxEntries = 10_000,
  ) {}

  /** Cached sessions (for tests and the admin view). */
  get size(): number {
    return this.#cache.size;
  }

  /** The mesh authorization for a legacy session token whose exp is `expMs`. */
  exchange(
    token: string,
    expMs: number,
    remoteAddress: string,
    traceHeaders: http2.IncomingHttpHeaders,
  ): Promise<ExchangeOutcome> {
    const hit = this.#cache.get(token);
    if (hit && hit.untilMs > Date.now())
      return Promise.resolve({ ok: true, authorization: hit.authorization });
    if (hit) this.#cache.delete(token);
    let pending = this.#inflight.get(token);
    if (!pending) {
      pending = this.#call(token, expMs, remoteAddress, traceHeaders).finally(() =>
        this.#inflight.delete(token),
      );
      this.#inflight.set(token, pending);
    }
    return pending;
  }

  async #call(
    token: string,
    expMs: number,
    remoteAddress: string,
    traceHeaders: http2.IncomingHttpHeaders,
  ): Promise<ExchangeOutcome> {
    const headers: http2.IncomingHttpHeaders = {
      ...traceHeaders,
      ":method": "POST",
      ":path": EXCHANGE_PATH,
      ":authority": "gateway",
      "content-type": "application/proto",
      "connect-protocol-version": "1",
    };
    const message = toBinary(
      ExchangeLegacyTokenRequestSchema,
      create(ExchangeLegacyTokenRequestSchema, { legacyToken: token }),
    );
    const down = new BufferedDownstream(headers, message, remoteAddress);
    this.dispatch(down);
    const answer = await down.answer;
    if (answer.reset) return { ok: false, ...restError(Code.Unavailable, "the identity exchange broke off") };
    if (answer.status !== 200) {
      const e = restErrorOf(answer.status, answer.body);
      // FAILED_PRECONDITION: a valid session of a user the mesh does not hold yet (not synced, or
      // an email conflict); the route falls back to legacy for that caller.
      return e.body.error === "failed_precondition"
        ? { ok: false, ...e, notExchangeable: true }
        : { ok: false, ...e };
    }
    const r = fromBinary(ExchangeLegacyTokenResponseSchema, answer.body);
    const authorization = `Bearer ${r.accessToken}`;
    const meshExpMs = r.expireTime ? timestampMs(r.expireTime) : Date.now();
    const untilMs = Math.min(meshExpMs, expMs || meshExpMs) - EXPIRY_SLACK_MS;
    if (untilMs > Date.now()) {
      if (this.#cache.size >= this.maxEntries) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
      this.#cache.set(token, { authorization, untilMs });
    }
    return { ok: true, authorization };
  }
}
