import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "@meshwork/telemetry";
import {
  ASSERTION_HEADER,
  type AssertionSigner,
  type AssertionVerifier,
  createAssertionSigner,
  createAssertionVerifier,
} from "./assertion.js";
import type { IdentityConfig } from "./config.js";
import { createIdentityInterceptor } from "./interceptor.js";

/** A service's side of identity: the server interceptor, and how it asserts itself to others. */
export interface ServiceIdentity {
  /** Runs before any handler: see `createIdentityInterceptor`. */
  readonly interceptor: Interceptor;
  /**
   * Interceptors for calls to `audience` (another service's short name) that assert this
   * service as the caller; empty when the service has no `IDENTITY_KEY`.
   */
  callsTo(audience: string): Interceptor[];
}

/**
 * An interceptor for calls made by `signer`'s issuer (a service) to `audience`: each call carries
 * an assertion that the caller is that service (role `service`), signed with its own key.
 */
export function createCallerInterceptor(signer: AssertionSigner, audience: string): Interceptor {
  const claims = { subject: signer.issuer, roles: ["service"] };
  return (next) => (req) => {
    req.header.set(ASSERTION_HEADER, signer.sign(claims, audience));
    return next(req);
  };
}

/**
 * Builds a service's identity from its configuration: assertions verified against
 * `config.trust` for the audiences `config.audiences` (default `service`), policies enforced
 * when any issuer is trusted, and a signer for its own calls when it has a key.
 */
export function createServiceIdentity(
  config: IdentityConfig | undefined,
  service: string,
  logger?: Logger,
): ServiceIdentity {
  let verifier: AssertionVerifier | undefined;
  if (config?.trust && config.trust.size > 0) {
    verifier = createAssertionVerifier({
      trust: config.trust,
      edgeIssuers: config.edgeIssuers,
      audiences: config.audiences ?? [service],
    });
  } else {
    logger?.warn(
      "IDENTITY_TRUST is not set: every caller is anonymous and method policies are not enforced by this service",
    );
  }
  const signer = config?.signingKey
    ? createAssertionSigner({ issuer: service, privateKey: config.signingKey })
    : undefined;
  return {
    interceptor: createIdentityInterceptor({ verifier, enforce: verifier !== undefined }),
    callsTo: (audience) => (signer ? [createCallerInterceptor(signer, audience)] : []),
  };
}
