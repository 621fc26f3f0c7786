import type { KeyObject } from "node:crypto";
import { z } from "zod";
import { privateKeyFrom, publicKeyFrom } from "./keys.js";

/** How a process takes part in identity assertions; see `runtimeEnvShape`. */
export interface IdentityConfig {
  /**
   * Issuers whose assertions this process accepts, by name, with their Ed25519 public keys.
   * Absent: none is trusted; every call is anonymous and method policies are not enforced
   * here (the process logs a warning at start).
   */
  trust: ReadonlyMap<string, KeyObject> | undefined;
  /** Issuers that speak for users (the edge); any other trusted issuer is a service. */
  edgeIssuers: readonly string[];
  /** The audiences this process answers to; default its service name. */
  audiences: readonly string[] | undefined;
  /** This process's own key, to sign assertions as itself (calls to other services). */
  signingKey: KeyObject | undefined;
}

/** `issuer=publicKey,issuer=publicKey` -> a map; throws naming the bad entry. */
export function parseTrust(text: string): Map<string, KeyObject> {
  const out = new Map<string, KeyObject>();
  for (const part of text.split(",").map((p) => p.trim())) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const name = part.slice(0, eq);
    if (eq <= 0 || !/^[a-z][a-z0-9_-]*$/.test(name)) {
      throw new Error(`expected <issuer>=<public key>[,...], got ${JSON.stringify(part.slice(0, 40))}`);
    }
    try {
      out.set(name, publicKeyFrom(part.slice(eq + 1)));
    } catch (err) {
      throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return out;
}

const list = (t: string) =>
  t
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

function parsed<T>(parse: (text: string) => T) {
  return z.string().transform((text, ctx) => {
    try {
      return parse(text);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
      return z.NEVER;
    }
  });
}

/** The identity variables, spread into `runtimeEnvShape`. */
export function identityEnvShape() {
  return {
    /**
     * Trusted issuers of identity assertions: `gateway=<key>,orders=<key>`, each key the
     * base64url of an Ed25519 public key. Set: assertions are verified and every method's
     * access policy is enforced by the runtime.
     */
    IDENTITY_TRUST: parsed(parseTrust).optional(),
    /** Issuers among those that assert users (the edge). */
    IDENTITY_EDGE_ISSUERS: z.string().default("gateway").transform(list),
    /** Audiences this process accepts, comma-separated; default the service's own name. */
    IDENTITY_AUDIENCE: z.string().transform(list).optional(),
    /** This process's Ed25519 private key (base64url PKCS#8), to assert itself to others. */
    IDENTITY_KEY: parsed(privateKeyFrom).optional(),
  };
}

type IdentityEnv = z.infer<z.ZodObject<ReturnType<typeof identityEnvShape>>>;

export function toIdentityConfig(env: IdentityEnv): IdentityConfig {
  return {
    trust: env.IDENTITY_TRUST,
    edgeIssuers: env.IDENTITY_EDGE_ISSUERS,
    audiences: env.IDENTITY_AUDIENCE,
    signingKey: env.IDENTITY_KEY,
  };
}
