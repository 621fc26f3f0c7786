import { type DatabaseConfig, databaseEnvShape, toDatabaseConfig } from "@meshwork/db";
import { type DiscoveryConfig, discoveryEnvShape, toDiscoveryConfig } from "@meshwork/discovery";
import { type EventsConfig, eventsEnvShape, toEventsConfig } from "@meshwork/events";
import { parseEnv, type RuntimeConfig, runtimeEnvShape, toRuntimeConfig } from "@meshwork/runtime";
import { z } from "zod";
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
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
  events: EventsConfig;
  discovery: DiscoveryConfig;
  tokens: TokenSettings;
  bootstrap: BootstrapSettings;
  authFailures: AuthFailureLimits;
}

/** Reads the users service's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const e = parseEnv(shape, env);
  return {
    runtime: toRuntimeConfig(e),
    db: toDatabaseConfig(e),
    events: toEventsConfig(e),
    discovery: toDiscoveryConfig(e),
    tokens: { issuer: e.USERS_JWT_ISSUER, audience: e.USERS_JWT_AUDIENCE, ttlSeconds: e.USERS_TOKEN_TTL_S },
    bootstrap: {
      secretFile: e.USERS_BOOTSTRAP_SECRET_FILE,
      secret: e.USERS_BOOTSTRAP_SECRET,
      outFile: e.USERS_BOOTSTRAP_SECRET_OUT,
    },
    authFailures: { maxFailures: e.USERS_AUTH_MAX_FAILURES, windowS: e.USERS_AUTH_FAILURE_WINDOW_S },
  };
}
