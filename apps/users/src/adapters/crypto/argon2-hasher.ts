import { hash, verify } from "@node-rs/argon2";
import type { PasswordHasher } from "../../domain/ports.js";

/**
 * Argon2id with the library's defaults (19 MiB, 2 passes: OWASP's minimum recommendation).
 * Hashing runs on libuv's thread pool, off the event loop.
 */
export function createArgon2Hasher(): PasswordHasher {
  return {
    hash: (password) => hash(password),
    async verify(encoded, password) {
      try {
        return await verify(encoded, password);
      } catch {
        return false;
      }
    },
  };
}
