import { scrypt, timingSafeEqual } from "node:crypto";

/** The legacy monolith's password hashes: `scrypt$<salt b64url>$<key b64url>` (apps/legacy). */
export const LEGACY_SCRYPT_PREFIX = "scrypt$";

/** Legacy's parameters (N 2^14, r 8, p 1, 32-byte key): a hash carries no parameters of its own. */
const PARAMS = { N: 16384, r: 8, p: 1 };
const KEY_BYTES = 32;

/**
 * Verifies a password against a hash the legacy monolith made, with legacy's own algorithm, so
 * a user synced from legacy logs in with the password they had there. A malformed hash verifies
 * nothing. Derivation runs on libuv's thread pool, off the event loop.
 */
export async function verifyLegacyScrypt(encoded: string, password: string): Promise<boolean> {
  const [scheme, salt, key, extra] = encoded.split("$");
  if (scheme !== "scrypt" || !salt || !key || extra !== undefined) return false;
  const expected = Buffer.from(key, "base64url");
  if (expected.length !== KEY_BYTES) return false;
  const actual = await new Promise<Buffer>((resolve, reject) =>
    scrypt(password, Buffer.from(salt, "base64url"), KEY_BYTES, PARAMS, (err, derived) =>
      err ? reject(err) : resolve(derived),
    ),
  );
  return timingSafeEqual(actual, expected);
}
