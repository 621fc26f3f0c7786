import { type KeyObject, sign, verify } from "node:crypto";

/**
 * Who is calling, as a verified identity assertion says: a user the edge authenticated (`kind`
 * `user`, its subject, roles and email from the token the edge verified) or another service
 * (`kind` `service`, subject = the service's name, role `service`).
 */
export interface Caller {
  kind: "user" | "service";
  subject: string;
  roles: readonly string[];
  email: string | undefined;
  /** Who signed the assertion (`gateway`, `orders`). */
  issuer: string;
}

/** The request header that carries the assertion (a compact JWS, EdDSA). */
export const ASSERTION_HEADER = "x-meshwork-identity";

/** How long an assertion is valid: short, so a leaked one is useless soon. */
export const ASSERTION_LIFETIME_S = 60;
/** Longest `exp - iat` a verifier accepts, whatever a signer chose. */
const MAX_LIFETIME_S = 300;
/** Clock difference tolerated between signer and verifier. */
const SKEW_S = 5;

const HEADER = Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "JWT" })).toString("base64url");

/** What an issuer asserts of a caller. */
export interface Claims {
  subject: string;
  roles: readonly string[];
  email?: string | undefined;
}

/** Signs identity assertions as one issuer; see {@link createAssertionSigner}. */
export interface AssertionSigner {
  readonly issuer: string;
  /** An assertion of `claims` for the service `audience`; reused while more than half valid. */
  sign(claims: Claims, audience: string): string;
}

/**
 * Signs identity assertions (compact JWS, `alg` EdDSA, RFC 8037) with `privateKey` as `issuer`,
 * valid {@link ASSERTION_LIFETIME_S} seconds and bound to one audience (the called service's
 * short name). An assertion is reused until half its lifetime has passed, so a busy caller signs
 * about once per 30 s per (caller, audience) rather than per call. Synchronous: an Ed25519
 * signature costs tens of microseconds.
 */
export function createAssertionSigner(options: {
  issuer: string;
  privateKey: KeyObject;
  /** For tests: seconds since the epoch. */
  now?: () => number;
}): AssertionSigner {
  const { issuer, privateKey } = options;
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const made = new Map<string, { token: string; reuseUntil: number }>();
  return {
    issuer,
    sign(claims, audience) {
      const t = now();
      const key = `${audience}\n${claims.subject}\n${claims.roles.join(",")}\n${claims.email ?? ""}`;
      const hit = made.get(key);
      if (hit && hit.reuseUntil > t) return hit.token;
      const payload = Buffer.from(
        JSON.stringify({
          iss: issuer,
          sub: claims.subject,
          aud: audience,
          iat: t,
          exp: t + ASSERTION_LIFETIME_S,
          roles: claims.roles,
          ...(claims.email ? { email: claims.email } : {}),
        }),
      ).toString("base64url");
      const input = `${HEADER}.${payload}`;
      const token = `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
      // Bounded: one entry per live (caller, audience); expired ones go when the map is full.
      if (made.size >= 10_000) for (const [k, v] of made) if (v.reuseUntil <= t) made.delete(k);
      if (made.size >= 10_000) made.clear();
      made.set(key, { token, reuseUntil: t + ASSERTION_LIFETIME_S / 2 });
      return token;
    },
  };
}

/** Thrown (and answered UNAUTHENTICATED) when an assertion does not verify; says why. */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Verifies identity assertions; see {@link createAssertionVerifier}. */
export interface AssertionVerifier {
  /** The caller the assertion names; throws {@link AssertionError} if it does not verify. */
  verify(token: string): Caller;
}

interface Payload {
  iss?: unknown;
  sub?: unknown;
  aud?: unknown;
  iat?: unknown;
  exp?: unknown;
  roles?: unknown;
  email?: unknown;
}

/**
 * Verifies assertions against the trusted issuers' public keys: the signature, `exp` (with
 * {@link SKEW_S} of skew), an `iat` not in the future and a lifetime of at most 5 minutes, and an
 * `aud` that is one of `audiences` (this service). Edge issuers (the gateway) may assert any user
 * with its roles; any other issuer is a service and asserts only itself (`sub` = `iss`, role
 * `service`), so a service's key cannot be used to act as a user or as another service.
 *
 * Verified assertions are remembered until they expire (at most 10,000): a caller reuses one for
 * half a minute, so most calls cost one map lookup instead of a signature check.
 */
export function createAssertionVerifier(options: {
  trust: ReadonlyMap<string, KeyObject>;
  edgeIssuers: readonly string[];
  audiences: readonly string[];
  now?: () => number;
}): AssertionVerifier {
  const edge = new Set(options.edgeIssuers);
  const audiences = new Set(options.audiences);
  const now = options.now ?? (() => Date.now() / 1000);
  const verified = new Map<string, { caller: Caller; exp: number }>();

  const check = (token: string, t: number): { caller: Caller; exp: number } => {
    const parts = token.split(".");
    if (parts.length !== 3) throw new AssertionError("not a compact JWS");
    const [h, p, s] = parts as [string, string, string];
    let header: { alg?: unknown; crit?: unknown };
    let payload: Payload;
    try {
      header = JSON.parse(Buffer.from(h, "base64url").toString("utf8"));
      payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
    } catch {
      throw new AssertionError("malformed");
    }
    if (header?.alg !== "EdDSA" || header.crit !== undefined)
      throw new AssertionError("algorithm not allowed");
    if (typeof payload?.iss !== "string") throw new AssertionError("no issuer");
    const key = options.trust.get(payload.iss);
    if (!key) throw new AssertionError(`issuer ${JSON.stringify(payload.iss)} not trusted`);
    if (!verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, "base64url"))) {
      throw new AssertionError("bad signature");
    }
    const { iat, exp, aud, sub } = payload;
    if (typeof exp !== "number" || typeof iat !== "number") throw new AssertionError("no iat or exp");
    if (exp + SKEW_S <= t) throw new AssertionError("expired");
    if (iat - SKEW_S > t) throw new AssertionError("issued in the future");
    if (exp - iat > MAX_LIFETIME_S) throw new AssertionError("lifetime too long");
    const auds = Array.isArray(aud) ? aud : [aud];
    if (!auds.some((a) => typeof a === "string" && audiences.has(a))) {
      throw new AssertionError("audience is not this service");
    }
    if (typeof sub !== "string" || sub === "") throw new AssertionError("no subject");
    if (edge.has(payload.iss)) {
      const roles = Array.isArray(payload.roles)
        ? payload.roles.filter((r): r is string => typeof r === "string")
        : [];
      const email = typeof payload.email === "string" ? payload.email : undefined;
      return { caller: { kind: "user", subject: sub, roles, email, issuer: payload.iss }, exp };
    }
    if (sub !== payload.iss) throw new AssertionError("a service may only assert itself");
    return {
      caller: { kind: "service", subject: sub, roles: ["service"], email: undefined, issuer: payload.iss },
      exp,
    };
  };

  return {
    verify(token) {
      const t = now();
      const hit = verified.get(token);
      if (hit) {
        if (hit.exp + SKEW_S > t) return hit.caller;
        verified.delete(token);
      }
      const fresh = check(token, t);
      if (verified.size >= 10_000) for (const [k, v] of verified) if (v.exp + SKEW_S <= t) verified.delete(k);
      if (verified.size >= 10_000) verified.clear();
      verified.set(token, fresh);
      return fresh.caller;
    },
  };
}
