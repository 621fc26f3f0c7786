import type { RuntimeConfig } from "./config.js";
import { type Claims, createAssertionSigner } from "./identity/assertion.js";
import { type IdentityConfig, parseTrust } from "./identity/config.js";
import { generateIdentityKey, type IdentityKeyPair, privateKeyFrom } from "./identity/keys.js";

/**
 * A runtime configuration for services started inside tests and benchmarks: loopback, port 0
 * (the caller reads the bound port from `start()`), no exporters, every trace sampled, short
 * grace and a slow health-check loop. Override what a test needs.
 */
export function testRuntimeConfig(overrides: Partial<RuntimeConfig> = {}): RuntimeConfig {
  return {
    host: "127.0.0.1",
    port: 0,
    logLevel: "silent",
    shutdownGraceMs: 1_000,
    healthCheckIntervalMs: 60_000,
    readMaxBytes: 1024 * 1024,
    tracesExporter: "none",
    otlpEndpoint: undefined,
    sampleRatio: 1,
    ...overrides,
  };
}

/**
 * Identity keys for tests: a key pair per issuer (`gateway` and whatever else is named), the
 * configuration of a service that trusts them all, and assertions signed as any of them.
 */
export function testIdentity(issuers: readonly string[] = ["gateway"]) {
  const keys = Object.fromEntries(issuers.map((i) => [i, generateIdentityKey()])) as Record<
    string,
    IdentityKeyPair
  >;
  const signers = new Map(
    issuers.map((i) => [
      i,
      createAssertionSigner({ issuer: i, privateKey: privateKeyFrom(keys[i]?.privateKey ?? "") }),
    ]),
  );
  const trustText = issuers.map((i) => `${i}=${keys[i]?.publicKey}`).join(",");
  return {
    keys,
    /** `IDENTITY_TRUST` for an environment. */
    trustText,
    /** A runtime's identity config trusting every issuer (with `signingKey` of `self` if named). */
    config(self?: string, audiences?: string[]): IdentityConfig {
      return {
        trust: parseTrust(trustText),
        edgeIssuers: ["gateway"],
        audiences,
        signingKey: self && keys[self] ? privateKeyFrom(keys[self].privateKey) : undefined,
      };
    },
    /** An assertion of `claims` for `audience`, signed as `issuer`. */
    assert(issuer: string, claims: Claims, audience: string): string {
      const signer = signers.get(issuer);
      if (!signer) throw new Error(`no test key for ${issuer}`);
      return signer.sign(claims, audience);
    },
    /**
     * The header a call to `audience` carries for a caller the gateway verified: what a test sends
     * straight to a service's port in place of the gateway.
     */
    headers(audience: string, subject: string, roles: string | readonly string[] = ["customer"]) {
      const list = typeof roles === "string" ? roles.split(",").filter(Boolean) : roles;
      return { "x-meshwork-identity": this.assert("gateway", { subject, roles: list }, audience) };
    },
  };
}
export { connectRawH2, FrameType, hpackBlock, type RawH2Client } from "./raw-h2.js";
