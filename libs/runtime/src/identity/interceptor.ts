import { type DescMethod, getOption, hasOption } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { Access_Level, access } from "@meshwork/contracts/meshwork/api/v1/access";
import { ASSERTION_HEADER, AssertionError, type AssertionVerifier, type Caller } from "./assertion.js";

/**
 * The identity headers a handler may read (`x-meshwork-subject`, `-roles`, `-email`). The runtime
 * sets them from a verified assertion only; a request that carries any of them is refused.
 */
export const IdentityHeaders = {
  subject: "x-meshwork-subject",
  roles: "x-meshwork-roles",
  email: "x-meshwork-email",
} as const;

/** The verified caller of the call being handled (undefined: anonymous). */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "meshwork.caller" });

/** The verified caller of a call, or undefined for an anonymous one. */
export function callerOf(ctx: Pick<HandlerContext, "values">): Caller | undefined {
  return ctx.values.get(callerKey);
}

/**
 * The verified caller of a call, or UNAUTHENTICATED naming `service`: for methods that return a
 * user's data, which a call that did not come through the gateway's authentication never gets.
 */
export function requireCaller(ctx: Pick<HandlerContext, "values">, service: string): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) {
    throw new ConnectError(
      `no verified caller: call ${service} through the gateway with a token`,
      Code.Unauthenticated,
    );
  }
  return caller;
}

type Policy =
  | { kind: "public" }
  | { kind: "authenticated" }
  | { kind: "role"; role: string }
  | { kind: "none" };

// Served by the runtime itself, with no access option: probes and tooling reach them anonymously.
const infrastructure = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);
const policies = new WeakMap<DescMethod, Policy>();

/** A method's `(meshwork.api.v1.access)` policy; none declared (or unusable) is `none`. */
function policyOf(method: DescMethod): Policy {
  let policy = policies.get(method);
  if (policy) return policy;
  policy = { kind: "none" };
  if (infrastructure.has(method.parent.typeName)) policy = { kind: "public" };
  else if (hasOption(method, access)) {
    const a = getOption(method, access);
    if (a.level === Access_Level.PUBLIC) policy = { kind: "public" };
    else if (a.level === Access_Level.AUTHENTICATED) policy = { kind: "authenticated" };
    else if (a.level === Access_Level.ROLE && a.role) policy = { kind: "role", role: a.role };
  }
  policies.set(method, policy);
  return policy;
}

const refuse = (message: string, code = Code.Unauthenticated) =>
  Promise.reject(new ConnectError(message, code));

/**
 * Establishes who calls, before any handler runs. Identity arrives only as an assertion in
 * `x-meshwork-identity` signed by a trusted issuer (see `createAssertionVerifier`); a request
 * carrying identity headers of its own, or an assertion that does not verify, is refused with
 * UNAUTHENTICATED, so reaching the port grants nothing. The verified caller is in the context
 * ({@link callerOf}) and in the identity headers, for handlers that read those.
 *
 * With `enforce`, the method's access policy from the contract is applied too (as the gateway
 * does): public methods and health/reflection are open, `authenticated` needs a caller, `role`
 * needs the role (PERMISSION_DENIED otherwise), and a method without a policy is denied.
 */
export function createIdentityInterceptor(options: {
  verifier: AssertionVerifier | undefined;
  enforce: boolean;
}): Interceptor {
  const { verifier, enforce } = options;
  return (next) => (req) => {
    const h = req.header;
    if (h.has(IdentityHeaders.subject) || h.has(IdentityHeaders.roles) || h.has(IdentityHeaders.email)) {
      return refuse("identity headers are not accepted from a caller: send a signed identity assertion");
    }
    const token = h.get(ASSERTION_HEADER);
    let caller: Caller | undefined;
    if (token !== null) {
      if (!verifier) return refuse("identity assertion not accepted: this service trusts no issuer");
      try {
        caller = verifier.verify(token);
      } catch (err) {
        if (err instanceof AssertionError) return refuse(`identity assertion rejected: ${err.message}`);
        throw err;
      }
      h.set(IdentityHeaders.subject, caller.subject);
      h.set(IdentityHeaders.roles, caller.roles.join(","));
      if (caller.email) h.set(IdentityHeaders.email, caller.email);
      req.contextValues.set(callerKey, caller);
    }
    if (enforce) {
      const policy = policyOf(req.method);
      if (policy.kind === "none") return refuse("method has no access policy", Code.PermissionDenied);
      if (policy.kind !== "public" && !caller) return refuse("this method needs an authenticated caller");
      if (policy.kind === "role" && !caller?.roles.includes(policy.role)) {
        return refuse(`role ${policy.role} required`, Code.PermissionDenied);
      }
    }
    return next(req);
  };
}
