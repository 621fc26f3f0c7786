import { describe, expect, it } from "vitest";
import { parseEnv, runtimeEnvShape, toRuntimeConfig } from "../config.js";
import { generateIdentityKey } from "./keys.js";

const shape = runtimeEnvShape({ port: 1 });

describe("identity configuration", () => {
  it("reads the trust list, this process's key and the edge issuers", () => {
    const gateway = generateIdentityKey();
    const orders = generateIdentityKey();
    const config = toRuntimeConfig(
      parseEnv(shape, {
        IDENTITY_TRUST: `gateway=${gateway.publicKey}, orders=${orders.publicKey}`,
        IDENTITY_KEY: orders.privateKey,
      }),
    );
    expect([...(config.identity?.trust?.keys() ?? [])]).toEqual(["gateway", "orders"]);
    expect(config.identity?.signingKey?.asymmetricKeyType).toBe("ed25519");
    expect(config.identity?.edgeIssuers).toEqual(["gateway"]);
    expect(toRuntimeConfig(parseEnv(shape, {})).identity?.trust).toBeUndefined();
  });

  it("names the bad variable and entry, and never echoes a private key", () => {
    const key = generateIdentityKey();
    expect(() => parseEnv(shape, { IDENTITY_TRUST: "gateway=short" })).toThrow(
      /IDENTITY_TRUST: gateway: not the base64url of a 32-byte Ed25519 public key/,
    );
    expect(() => parseEnv(shape, { IDENTITY_TRUST: `Gateway ${key.publicKey}` })).toThrow(
      /IDENTITY_TRUST: expected <issuer>=<public key>/,
    );
    const broken = `${key.privateKey.slice(0, 20)}AAAA`;
    let message = "";
    try {
      parseEnv(shape, { IDENTITY_KEY: broken });
    } catch (err) {
      message = String(err);
    }
    expect(message).toMatch(/IDENTITY_KEY: not a base64url PKCS#8 private key/);
    expect(message).not.toContain(broken);
  });
});
