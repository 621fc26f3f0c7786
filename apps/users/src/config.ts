import { type DatabaseConfig, databaseEnvShape, toDatabaseConfig } from "@meshwork/db";
import { type DiscoveryConfig, discoveryEnvShape, toDiscoveryConfig } from "@meshwork/discovery";
import { type EventsConfig, eventsEnvShape, toEventsConfig } from "@meshwork/events";
import { parseEnv, type RuntimeConfig, runtimeEnvShape, toRuntimeConfig } from "@meshwork/runtime";
import { z } from "zod";
import type { TokenSettings } from "./adapters/crypto/signing-keys.js";

const shape = {
  ...runtimeEnvShape({ port: 50051 }),
  ...databaseEnvShape({ dataDir: ".meshwork/data/users" }),
  ...eventsEnvShape(),
  ...discoveryEnvShape(),
  USERS_JWT_ISSUER: z.string().min(1).default("meshwork-users"),
  USERS_JWT_AUDIENCE: z.string().min(1).default("meshwork"),
  USERS_TOKEN_TTL_S: z.coerce.number().int().positive().default(3600),
  /** Comma-separated emails granted the `admin` role when they register. */
  USERS_ADMIN_EMAILS: z.string().default(""),
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
  events: EventsConfig;
  discovery: DiscoveryConfig;
  tokens: TokenSettings;
  adminEmails: ReadonlySet<string>;
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
    adminEmails: new Set(
      e.USERS_ADMIN_EMAILS.split(",")
        .map((s) => s.trim().toLowerCase())
        .filter(Boolean),
    ),
  };
}
