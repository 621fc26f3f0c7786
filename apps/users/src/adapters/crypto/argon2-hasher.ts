import { hash, verify } from "@node-rs/argon2";
import type { PasswordHasher } from "../../domain/ports.js";
import { LEGACY_SCRYPT_PREFIX, verifyLegacyScrypt } from "./legacy-scrypt.js";

/**
 * Argon2id with the library's defaults (19 MiB, 2 passes: OWASP's minimum recommendation).
 * Hashing runs on libuv's thread pool, off the event loop. A hash synced from the legacy
 * monolith (scrypt) is verified with legacy's algorithm and reported as needing a re-hash, so
 * the first successful login moves it to Argon2id.
 */
export function createArgon2Hasher(): PasswordHasher {
  return {
    hash: (password) => hash(password),
    async verify(encoded, password) {
      try {
        if (encoded.startsWith(LEGACY_SCRYPT_PREFIX)) return await verifyLegacyScrypt(encoded, password);
        return await verify(encoded, password);
      } catch {
        return false;
      }
    },
    needsRehash: (encoded) => !encoded.startsWith("$argon2id$"),
  };
}
