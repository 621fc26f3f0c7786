import { randomBytes } from "node:crypto";
import type { DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import { createArgon2Hasher } from "./adapters/crypto/argon2-hasher.js";
import { createKeyEncryption } from "./adapters/crypto/key-encryption.js";
import { createLegacyTokenVerifier } from "./adapters/crypto/legacy-tokens.js";
import { createJwtIssuer, createSigningKeys, type SigningKeys } from "./adapters/crypto/signing-keys.js";
import { createAuthAttempts } from "./adapters/db/auth-attempts.js";
import type { UsersSchema } from "./adapters/db/schema.js";
import { createUsersUnitOfWork } from "./adapters/db/unit-of-work.js";
import { createUserRepository } from "./adapters/db/user-repository.js";
import type { Config } from "./config.js";
import type { AuthAttempts } from "./domain/auth-attempts.js";
import type {
  LegacyTokenVerifier,
  PasswordHasher,
  TokenIssuer,
  UserRepository,
  UsersUnitOfWork,
} from "./domain/ports.js";

/** Everything the use cases need, built once at start-up. */
export interface App {
  users: UserRepository;
  uow: UsersUnitOfWork;
  hasher: PasswordHasher;
  tokens: TokenIssuer;
  keys: SigningKeys;
  attempts: AuthAttempts;
  /** The legacy monolith's session tokens; absent without LEGACY_TOKEN_SECRET. */
  legacyTokens: LegacyTokenVerifier | undefined;
  decoyHash: string;
  /** Warnings of the use cases (never with secrets), e.g. a failed re-hash at login. */
  logger: Pick<Logger, "warn">;
  /** Counts a committed registration (`users_registered_total`). */
  countRegistration(): void;
}

/** Builds the app over a migrated database; business counters go to `meter`, warnings to `logger`. */
export async function createApp(
  config: Config,
  database: DatabaseHandle<UsersSchema>,
  meter: Meter,
  logger: Pick<Logger, "warn">,
): Promise<App> {
  const hasher = createArgon2Hasher();
  const registered = meter.createCounter("users.registered", {
    description: "Accounts created (committed registrations)",
  });
  const keys = await createSigningKeys(database.db, {
    encryption: createKeyEncryption(config.keys.encryptionKey),
    overlapMs: config.keys.overlapMs,
    refreshMs: config.keys.refreshMs,
    onError: (err) => logger.warn({ err }, "reloading the signing keys failed"),
  });
  return {
    users: createUserRepository(database.db),
    uow: createUsersUnitOfWork(database.db, config.events.namespace),
    hasher,
    tokens: createJwtIssuer(keys.current, config.tokens),
    keys,
    attempts: createAuthAttempts(database.db, config.authFailures),
    legacyTokens: config.legacyTokenSecret ? createLegacyTokenVerifier(config.legacyTokenSecret) : undefined,
    decoyHash: await hasher.hash(randomBytes(16).toString("hex")),
    logger,
    countRegistration: () => registered.add(1),
  };
}
