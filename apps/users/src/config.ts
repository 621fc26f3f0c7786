import { readFileSync } from "node:fs";
import { type DatabaseConfig, databaseEnvShape, toDatabaseConfig } from "@meshwork/db";
import { type DiscoveryConfig, discoveryEnvShape, toDiscoveryConfig } from "@meshwork/discovery";
import {
  type EventsConfig,
  eventsEnvShape,
  readSealingKeys,
  refuseDefaultNamespaceUnderTest,
  type SealingKey,
  toEventsConfig,
} from "@meshwork/events";
import { parseEnv, type RuntimeConfig, runtimeEnvShape, toRuntimeConfig } from "@meshwork/runtime";
import { z } from "zod";
import { parseKeyEncryptionKey } from "./adapters/crypto/key-encryption.js";
import type { TokenSettings } from "./adapters/crypto/signing-keys.js";
import type { AuthFailureLimits } from "./adapters/db/auth-attempts.js";
import type { BootstrapSettings } from "./adapters/db/bootstrap-store.js";

const shape = {
  ...runtimeEnvShape({ port: 50051 }),
  ...databaseEnvShape({ dataDir: ".meshwork/data/users" }),
  ...eventsEnvShape(),
  ...discoveryEnvShape(),
  USERS_JWT_ISSUER: z.string().min(1).default("meshwork-users"),
  USERS_JWT_AUDIENCE: z.string().min(1).default("meshwork"),
  USERS_TOKEN_TTL_S: z.coerce.number().int().positive().default(3600),
  /**
   * The key encryption key (32 bytes, base64 or hex) that seals the private signing keys in the
   * database, or a file holding it (`_FILE`, e.g. a mounted Secret). Unset: keys are stored in
   * the clear (development), and a database holding sealed keys refuses to start.
   */
  USERS_KEY_ENCRYPTION_KEY: z.string().optional(),
  USERS_KEY_ENCRYPTION_KEY_FILE: z.string().optional(),
  /** How often each instance reloads the signing keys, to follow a rotation (ms). */
  USERS_KEY_REFRESH_MS: z.coerce.number().int().positive().default(30_000),
  /**
   * How long a retired key stays published (s). Default: the token lifetime plus the refresh
   * interval plus a minute of clock skew, so no token outlives the key that verifies it.
   */
  USERS_KEY_OVERLAP_S: z.coerce.number().int().positive().optional(),
  /** Removed: an email made admin by registering could be claimed by whoever registers it first. */
  USERS_ADMIN_EMAILS: z
    .string()
    .max(0, "USERS_ADMIN_EMAILS was removed: create the first admin with `meshctl admin create` (see README)")
    .optional(),
  /** A file holding the one-time bootstrap secret (a mounted Secret); wins over USERS_BOOTSTRAP_SECRET. */
  USERS_BOOTSTRAP_SECRET_FILE: z.string().min(1).optional(),
  USERS_BOOTSTRAP_SECRET: z
    .string()
    .min(16, "USERS_BOOTSTRAP_SECRET: at least 16 characters")
    .max(256)
    .optional(),
  /** Where a generated bootstrap secret is written (mode 0600) when none is given. */
  USERS_BOOTSTRAP_SECRET_OUT: z.string().min(1).default(".meshwork/bootstrap-secret"),
  /** Failed authentications per account within the window before the account is locked until it ends. */
  USERS_AUTH_MAX_FAILURES: z.coerce.number().int().positive().default(5),
  USERS_AUTH_FAILURE_WINDOW_S: z.coerce.number().int().positive().default(900),
  /**
   * The legacy monolith's session-token secret (HS256, the same value apps/legacy signs with):
   * ExchangeLegacyToken verifies old sessions with it. Unset: the exchange is unavailable.
   */
  LEGACY_TOKEN_SECRET: z.string().min(32, "LEGACY_TOKEN_SECRET: at least 32 characters").optional(),
  /**
   * The key ring that opens the legacy users' sealed password hashes, emails and names
   * (`id:base64key[,...]`, the same value legacy seals with: current key first, the previous one
   * kept during a rotation), or a file holding it (`_FILE`). Unset: sealed user captures are
   * dead-lettered, naming the field and the key id.
   */
  LEGACY_SYNC_KEY: z.string().optional(),
  LEGACY_SYNC_KEY_FILE: z.string().optional(),
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
  events: EventsConfig;
  discovery: DiscoveryConfig;
  tokens: TokenSettings;
  keys: { encryptionKey: Buffer | undefined; refreshMs: number; overlapMs: number };
  bootstrap: BootstrapSettings;
  authFailures: AuthFailureLimits;
  legacyTokenSecret: string | undefined;
  legacySyncKeys: SealingKey[];
}

/** Reads the users service's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  refuseDefaultNamespaceUnderTest(env, "users");
  const e = parseEnv(shape, env);
  return {
    runtime: toRuntimeConfig(e),
    db: toDatabaseConfig(e),
    events: toEventsConfig(e),
    discovery: toDiscoveryConfig(e),
    tokens: { issuer: e.USERS_JWT_ISSUER, audience: e.USERS_JWT_AUDIENCE, ttlSeconds: e.USERS_TOKEN_TTL_S },
    keys: {
      encryptionKey: keyEncryptionKey(e.USERS_KEY_ENCRYPTION_KEY, e.USERS_KEY_ENCRYPTION_KEY_FILE),
      refreshMs: e.USERS_KEY_REFRESH_MS,
      overlapMs:
        (e.USERS_KEY_OVERLAP_S ?? e.USERS_TOKEN_TTL_S + Math.ceil(e.USERS_KEY_REFRESH_MS / 1000) + 60) * 1000,
    },
    bootstrap: {
      secretFile: e.USERS_BOOTSTRAP_SECRET_FILE,
      secret: e.USERS_BOOTSTRAP_SECRET,
      outFile: e.USERS_BOOTSTRAP_SECRET_OUT,
    },
    authFailures: { maxFailures: e.USERS_AUTH_MAX_FAILURES, windowS: e.USERS_AUTH_FAILURE_WINDOW_S },
    legacyTokenSecret: e.LEGACY_TOKEN_SECRET,
    legacySyncKeys:
      readSealingKeys(
        { LEGACY_SYNC_KEY: e.LEGACY_SYNC_KEY, LEGACY_SYNC_KEY_FILE: e.LEGACY_SYNC_KEY_FILE },
        "LEGACY_SYNC_KEY",
      ) ?? [],
  };
}

function keyEncryptionKey(text: string | undefined, file: string | undefined): Buffer | undefined {
  if (text && file)
    throw new Error("set USERS_KEY_ENCRYPTION_KEY or USERS_KEY_ENCRYPTION_KEY_FILE, not both");
  if (file) return parseKeyEncryptionKey(readFileSync(file, "utf8"));
  return text ? parseKeyEncryptionKey(text) : undefined;
}
