import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { JWK } from "jose";

/** A private key as stored when sealed: AES-256-GCM over its JWK, bound to its kid. */
export interface SealedKey {
  sealed: "A256GCM";
  iv: string;
  tag: string;
  data: string;
}

export function isSealed(stored: unknown): stored is SealedKey {
  return (
    typeof stored === "object" && stored !== null && (stored as { sealed?: unknown }).sealed === "A256GCM"
  );
}

/** Sealed keys are in the database, and no key to open them is configured (or the wrong one). */
export class KeyEncryptionError extends Error {
  override readonly name = "KeyEncryptionError";
}

/**
 * Seals and opens the private signing keys kept in the database, with the key encryption key
 * from configuration (`USERS_KEY_ENCRYPTION_KEY` / `_FILE`): AES-256-GCM with a fresh 96-bit IV
 * per key and the key's `kid` as additional data, so a sealed key copied onto another row does
 * not open. A database dump alone never yields a key that signs tokens.
 */
export interface KeyEncryption {
  /** Whether keys are sealed (a key encryption key is configured). */
  readonly enabled: boolean;
  /** What to store for a private JWK: sealed when enabled, the JWK itself otherwise. */
  seal(kid: string, jwk: JWK): SealedKey | JWK;
  /** The private JWK from what is stored; KeyEncryptionError when it cannot be opened. */
  open(kid: string, stored: unknown): JWK;
}

export function createKeyEncryption(key: Buffer | undefined): KeyEncryption {
  if (key !== undefined && key.length !== 32) {
    throw new KeyEncryptionError(`the key encryption key must be 32 bytes (AES-256), not ${key.length}`);
  }
  const aad = (kid: string) => Buffer.from(`meshwork signing key ${kid}`);
  return {
    enabled: key !== undefined,
    seal(kid, jwk) {
      if (!key) return jwk;
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      cipher.setAAD(aad(kid));
      const data = Buffer.concat([cipher.update(JSON.stringify(jwk), "utf8"), cipher.final()]);
      return {
        sealed: "A256GCM",
        iv: iv.toString("base64url"),
        tag: cipher.getAuthTag().toString("base64url"),
        data: data.toString("base64url"),
      };
    },
    open(kid, stored) {
      if (!isSealed(stored)) return stored as JWK;
      if (!key) {
        throw new KeyEncryptionError(
          `signing key ${kid} is stored encrypted and no key encryption key is configured: ` +
            "set USERS_KEY_ENCRYPTION_KEY or USERS_KEY_ENCRYPTION_KEY_FILE to the key it was sealed with",
        );
      }
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(stored.iv, "base64url"));
        decipher.setAAD(aad(kid));
        decipher.setAuthTag(Buffer.from(stored.tag, "base64url"));
        const text = Buffer.concat([
          decipher.update(Buffer.from(stored.data, "base64url")),
          decipher.final(),
        ]);
        return JSON.parse(text.toString("utf8")) as JWK;
      } catch {
        throw new KeyEncryptionError(
          `signing key ${kid} cannot be decrypted with the configured key encryption key (a different key sealed it)`,
        );
      }
    },
  };
}

/**
 * The key encryption key from its configured text: 32 bytes as base64 (44 characters) or hex (64).
 * A file (`_FILE`) holds the same text; surrounding whitespace is ignored.
 */
export function parseKeyEncryptionKey(text: string): Buffer {
  const t = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  if (bytes.length !== 32) {
    throw new KeyEncryptionError(
      "the key encryption key must be 32 random bytes, as base64 or hex (e.g. `openssl rand -base64 32`)",
    );
  }
  return bytes;
}
