import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { generateIdentityKey, type IdentityKeyPair } from "@meshwork/runtime";

/**
 * The identity keys of a mesh's processes: an Ed25519 pair for the gateway (it signs the callers
 * it verified) and one per service (each asserts itself when it calls another). Made once, kept
 * in `file` readable by the owner only.
 */
export function meshIdentityKeys(file: string, names: readonly string[], edges: readonly string[]) {
  mkdirSync(dirname(file), { recursive: true });
  const keys = existsSync(file)
    ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, IdentityKeyPair>)
    : {};
  for (const name of names) keys[name] ??= generateIdentityKey();
  writeFileSync(file, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  // Every service trusts every issuer: the gateway for users, the services for themselves.
  const trust = names.map((n) => `${n}=${keys[n]?.publicKey}`).join(",");
  return {
    /** `IDENTITY_*` for one process: its own key and whom it trusts (assertions, registry entries). */
    env(name: string, kind: "service" | "gateway"): Record<string, string> {
      const own = keys[name]?.privateKey;
      if (!own) throw new Error(`no identity key for ${name}`);
      // The gateway trusts the services' keys too: it uses only registry entries they signed.
      return kind === "gateway"
        ? { IDENTITY_KEY: own, IDENTITY_ISSUER: name, IDENTITY_TRUST: trust }
        : { IDENTITY_KEY: own, IDENTITY_TRUST: trust, IDENTITY_EDGE_ISSUERS: edges.join(",") };
    },
  };
}

/**
 * The key that seals users' JWT signing keys in its database (USERS_KEY_ENCRYPTION_KEY_FILE):
 * 32 random bytes, made once per mesh home, owner-only. Keys stored in the clear by an older mesh
 * are sealed in place when users starts with it.
 */
export function meshKeyEncryptionKeyFile(home: string): string {
  const file = join(home, "users-key-encryption-key");
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true });
    writeFileSync(file, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
  }
  chmodSync(file, 0o600);
  return file;
}

/** A fresh LEGACY_SYNC_KEY value: one AES-256 key with an id (`<id>:<base64>`). */
export function newLegacySyncKey(): string {
  return `k${new Date().toISOString().slice(0, 10).replaceAll("-", "")}:${randomBytes(32).toString("base64")}`;
}

/**
 * The key that seals legacy users' password hashes, emails and names on LEGACY_USERS
 * (LEGACY_SYNC_KEY_FILE), shared by the monolith (it seals) and users (it opens): made once per
 * mesh home, owner-only. A rotation puts a new `id:key` first and keeps the old one after a
 * comma until it has aged out.
 */
export function meshLegacySyncKeyFile(home: string): string {
  const file = join(home, "legacy-sync-key");
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true });
    writeFileSync(file, `${newLegacySyncKey()}\n`, { mode: 0o600, flag: "wx" });
  }
  chmodSync(file, 0o600);
  return file;
}

/**
 * The legacy monolith's session-token secret (LEGACY_TOKEN_SECRET), shared by the monolith (it
 * signs sessions) and users (ExchangeLegacyToken verifies them): made once per mesh home,
 * owner-only, so old sessions survive a restart and can be exchanged for mesh tokens.
 */
export function meshLegacyTokenSecret(home: string): string {
  const file = join(home, "legacy-token-secret");
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true });
    writeFileSync(file, `${randomBytes(32).toString("base64url")}\n`, { mode: 0o600, flag: "wx" });
  }
  chmodSync(file, 0o600);
  return readFileSync(file, "utf8").trim();
}
