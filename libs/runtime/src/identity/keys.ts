import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";

/**
 * An Ed25519 key pair as configuration carries it: the private key as base64url PKCS#8 DER
 * (`IDENTITY_KEY`), the public key as base64url of its 32 raw bytes (the JWK `x`, a value of
 * `IDENTITY_TRUST`). Both are plain strings so they fit an environment variable or a Secret.
 */
export interface IdentityKeyPair {
  privateKey: string;
  publicKey: string;
}

/** A fresh Ed25519 key pair for an issuer of identity assertions (meshctl, tests). */
export function generateIdentityKey(): IdentityKeyPair {
  const { privateKey } = generateKeyPairSync("ed25519");
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  return { privateKey: der.toString("base64url"), publicKey: publicKeyText(privateKey) };
}

/** Reads `IDENTITY_KEY`; throws a message naming what is wrong. */
export function privateKeyFrom(text: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(text, "base64url"), format: "der", type: "pkcs8" });
  } catch {
    throw new Error("not a base64url PKCS#8 private key");
  }
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`an ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

/** Reads one public key of `IDENTITY_TRUST` (base64url of the 32 raw Ed25519 bytes). */
export function publicKeyFrom(text: string): KeyObject {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) throw new Error("not the base64url of a 32-byte Ed25519 public key");
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: text }, format: "jwk" });
}

/** The configuration form of the public half of `key` (private or public). */
export function publicKeyText(key: KeyObject): string {
  const jwk = createPublicKey(key).export({ format: "jwk" });
  return String(jwk.x);
}
