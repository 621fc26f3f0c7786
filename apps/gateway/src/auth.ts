import { type DescService, getOption, hasOption } from "@bufbuild/protobuf";
import type { SharedTier } from "@meshwork/cache";
import { Access_Level, access } from "@meshwork/contracts/meshwork/api/v1/access";
import type { Meter } from "@opentelemetry/api";
import { type JWTPayload, errors as joseErrors, jwtVerify } from "jose";
import { Code } from "./errors.js";
import { createJwks, JwksUnavailableError } from "./jwks.js";
import { type KeySetKeys, VerifiedTokens } from "./verified-tokens.js";

/** A method's access policy, read from its `(meshwork.api.v1.access)` option. */
export type Policy =
  | { kind: "public" }
  | { kind: "authenticated" }
  | { kind: "role"; role: string }
  /** No policy declared (or an unusable one): denied, never open. */
  | { kind: "none" };

/** Policies by full method path, `/pkg.Service/Method`. */
export function policiesOf(services: readonly DescService[]): Map<string, Policy> {
  const out = new Map<string, Policy>();
  for (const service of services) {
    for (const method of service.methods) {
      let policy: Policy = { kind: "none" };
      if (hasOption(method, access)) {
        const a = getOption(method, access);
        if (a.level === Access_Level.PUBLIC) policy = { kind: "public" };
        else if (a.level === Access_Level.AUTHENTICATED) policy = { kind: "authenticated" };
        else if (a.level === Access_Level.ROLE && a.role) policy = { kind: "role", role: a.role };
      }
      out.set(`/${service.typeName}/${method.name}`, policy);
    }
  }
  return out;
}

/** Identity headers the gateway sets upstream (and strips from what clients send). */
export const IdentityHeaders = {
  subject: "x-meshwork-subject",
  roles: "x-meshwork-roles",
  email: "x-meshwork-email",
} as const;

export interface Identity {
  subject: string;
  roles: string[];
  email: string | undefined;
  /** The token's `exp`, ms since the epoch. */
  expiresAt: number;
}

export type AuthResult =
  | { ok: true; identity: Identity | undefined }
  | { ok: false; code: Code; message: string };

export interface AuthOptions {
  /** The users service's JWKS document. */
  jwksUrl: string;
  /** Least time between two fetches of the key set (an unknown `kid` within it is refused). */
  cooldownMs: number;
  issuer: string;
  audience: string;
  /**
   * How long a fetched key set is used before it is fetched again (ms; default 5 minutes): also
   * the longest a key dropped from the JWKS after a rotation is still accepted here, and the
   * longest a verified token is remembered.
   */
  jwksMaxAgeMs?: number;
  /** How far in the future a token's `iat` may be, for clocks that differ (s; default 30). */
  clockSkewS?: number;
  /** The longest lifetime (`exp` - `iat`) a token may claim (s; default 24 hours). */
  maxLifetimeS?: number;
  /**
   * The shared tier the key set is cached in besides this process (NATS KV or Redis), so
   * gateways fetch it once between them; absent: each process fetches its own.
   */
  shared?: SharedTier;
  /** Deadline of one shared-tier call (ms; default 100): past it the key set is fetched directly. */
  sharedTimeoutMs?: number;
  /** For the key set cache's metrics (`cache_*{cache="jwks"}`). */
  meter?: Meter;
  logger?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

export const AUTH_DEFAULTS = { jwksMaxAgeMs: 5 * 60_000, clockSkewS: 30, maxLifetimeS: 24 * 3600 } as const;

type Failure = { code: Code; message: string };

/** The identity a verified token's claims carry, or why they are refused. */
function identityOf(payload: JWTPayload, skewS: number, maxLifetimeS: number): Identity | Failure {
  const iat = payload.iat as number;
  const exp = payload.exp as number;
  if (iat > Date.now() / 1000 + skewS) {
    return { code: Code.Unauthenticated, message: "token issued in the future (iat)" };
  }
  if (exp - iat > maxLifetimeS) {
    return {
      code: Code.Unauthenticated,
      message: `token lifetime (exp - iat) exceeds the maximum of ${maxLifetimeS} s`,
    };
  }
  const roles = Array.isArray(payload.roles)
    ? payload.roles.filter((r): r is string => typeof r === "string")
    : [];
  return {
    subject: String(payload.sub),
    roles,
    email: typeof payload.email === "string" ? payload.email : undefined,
    expiresAt: exp * 1000,
  };
}

/** The code and message of a failed verification; `keysFailed`: the key set, not the token, failed. */
function failureOf(err: unknown, keysFailed: boolean): Failure {
  if (
    err instanceof JwksUnavailableError ||
    err instanceof joseErrors.JWKSTimeout ||
    (keysFailed && err instanceof joseErrors.JOSENotSupported)
  ) {
    return { code: Code.Unavailable, message: "token keys unavailable" };
  }
  if (err instanceof joseErrors.JOSENotSupported) {
    return { code: Code.Unauthenticated, message: `token not supported: ${err.message}` };
  }
  if (err instanceof joseErrors.JWTExpired) return { code: Code.Unauthenticated, message: "token expired" };
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    return { code: Code.Unauthenticated, message: `token claim ${err.claim} rejected` };
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed)
    return { code: Code.Unauthenticated, message: "token algorithm not allowed" };
  if (keysFailed && err instanceof Error && err.name === "TypeError")
    return { code: Code.Unavailable, message: "token keys unavailable" };
  return { code: Code.Unauthenticated, message: "invalid token" };
}

/** The token of an `authorization: Bearer <token>` header. */
function bearerOf(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  return /^Bearer\s+(\S+)$/i.exec(authorization)?.[1];
}

/**
 * Applies `policy` to the bearer token of `authorization`: its identity is `verified` when given
 * (the token was just verified), else what `known` says of it; undefined when the token must
 * still be verified.
 */
function decide(
  policy: Policy,
  authorization: string | undefined,
  known: (token: string) => Identity | undefined,
  verified?: Identity | Failure,
): AuthResult | undefined {
  if (policy.kind === "none") {
    return { ok: false, code: Code.PermissionDenied, message: "method has no access policy" };
  }
  const token = bearerOf(authorization);
  // For a public method no token is fine; a token that is there must verify (as Envoy's
  // `allow_missing`), and its identity is passed on.
  if (!token) {
    if (policy.kind === "public") return { ok: true, identity: undefined };
    return { ok: false, code: Code.Unauthenticated, message: "missing bearer token" };
  }
  const id = verified ?? known(token);
  if (id === undefined) return undefined;
  if (!("subject" in id)) return { ok: false, code: id.code, message: id.message };
  if (policy.kind === "role" && !id.roles.includes(policy.role)) {
    return { ok: false, code: Code.PermissionDenied, message: `role ${policy.role} required` };
  }
  return { ok: true, identity: id };
}

/**
 * Verifies bearer tokens (ES256, issuer and audience checked, `exp` enforced, `iat` required and
 * not in the future beyond the clock skew, a lifetime no longer than the maximum) against the
 * users service's JWKS — cached in this process and the shared tier (see `jwks.ts`), used for
 * `jwksMaxAgeMs` after its fetch, and fetched again when a token names an unknown `kid` — and
 * applies a method's policy.
 */
export function createAuthenticator(options: AuthOptions) {
  const maxAgeMs = options.jwksMaxAgeMs ?? AUTH_DEFAULTS.jwksMaxAgeMs;
  const skewS = options.clockSkewS ?? AUTH_DEFAULTS.clockSkewS;
  const maxLifetimeS = options.maxLifetimeS ?? AUTH_DEFAULTS.maxLifetimeS;
  const jwks = createJwks({
    url: options.jwksUrl,
    cooldownMs: options.cooldownMs,
    maxAgeMs,
    timeoutMs: 2_000,
    shared: options.shared,
    sharedTimeoutMs: options.sharedTimeoutMs,
    meter: options.meter,
    logger: options.logger,
  });

  // An ES256 verification costs more than proxying the call: verified tokens are kept (see
  // VerifiedTokens for how long). Failures are not kept: a key can arrive with a refetch.
  const verified = new VerifiedTokens(10_000, maxAgeMs);

  async function verify(token: string): Promise<Identity | Failure> {
    // Whether a failure came from the key set (unreachable, unusable: UNAVAILABLE) rather than
    // from the token (a `crit` header jose does not support, a malformed header: UNAUTHENTICATED).
    let keysFailed = false;
    let used: { set: KeySetKeys; kid: string | undefined } | undefined;
    const getKey: typeof jwks.getKey = async (header, t) => {
      try {
        const { key, set } = await jwks.resolve(header, t);
        used = { set, kid: header.kid };
        return key;
      } catch (err) {
        const noMatch =
          err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys;
        if (!noMatch) keysFailed = true;
        throw err;
      }
    };
    try {
      const { payload } = await jwtVerify(token, getKey, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: ["ES256"],
        requiredClaims: ["sub", "exp", "iat"],
      });
      const identity = identityOf(payload, skewS, maxLifetimeS);
      if ("subject" in identity && used) verified.set(token, identity, used.set, used.kid, Date.now());
      return identity;
    } catch (err) {
      return failureOf(err, keysFailed);
    }
  }

  /** A token's identity when it needs no verification now (verified before), else undefined. */
  const known = (token: string): Identity | undefined => verified.get(token, jwks.latest(), Date.now());

  return {
    /** Closes the key set cache and its shared tier. */
    close: () => jwks.close(),
    /**
     * The policy's answer when it is known without waiting (no token needed or none given, or a
     * token verified before and still usable); undefined when the token must be verified first
     * ({@link authorize}). The proxy's usual path: no promise per call.
     */
    authorizeNow: (policy: Policy, authorization: string | undefined): AuthResult | undefined =>
      decide(policy, authorization, known),
    async authorize(policy: Policy, authorization: string | undefined): Promise<AuthResult> {
      const now = decide(policy, authorization, known);
      if (now) return now;
      const token = bearerOf(authorization) as string;
      return decide(policy, authorization, () => undefined, await verify(token)) as AuthResult;
    },
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;
