import {
  type EventsConfig,
  eventsEnvShape,
  readSealingKeys,
  refuseDefaultNamespaceUnderTest,
  type SealingKey,
  toEventsConfig,
} from "@meshwork/events";
import { z } from "zod";

const shape = z.object({
  HOST: z.string().min(1).default("127.0.0.1"),
  PORT: z.coerce.number().int().min(0).max(65535).default(8090),
  /** The monolith's one database: users, products, stock and orders in one schema. */
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  /**
   * The HMAC secret of the monolith's own session tokens (HS256 JWTs, at least 32 characters).
   * Unset: one made at start (tokens then die with the process).
   */
  LEGACY_TOKEN_SECRET: z.string().min(32).optional(),
  /** Seed the demo catalogue, customers and orders when the database is empty. */
  LEGACY_SEED: z.enum(["true", "false"]).default("true"),
});

export interface LegacyConfig {
  host: string;
  port: number;
  databaseUrl: string;
  logLevel: string;
  tokenSecret: string | undefined;
  seed: boolean;
  /**
   * NATS for the migration's data sync (the CDC relay out, the reverse sync in); absent without
   * `NATS_URL`: the monolith then runs alone, as before the migration began.
   */
  events: EventsConfig | undefined;
  /**
   * The key ring that seals users' password hashes, emails and names on LEGACY_USERS
   * (LEGACY_SYNC_KEY or LEGACY_SYNC_KEY_FILE, `id:base64key[,...]`): its first key, the one that
   * seals. Required with NATS_URL; the others in the ring are for users, which opens with any.
   */
  syncKey: SealingKey | undefined;
}

/** A schema's reading of `env`, or an error naming every bad variable. */
function parseOrThrow<T>(schema: z.ZodType<T>, env: Record<string, string>): T {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
  throw new Error(`bad configuration: ${problems}`);
}

/** Reads the monolith's configuration from the environment, once; a bad value names the variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): LegacyConfig {
  // Empty strings mean "unset", as in most shells' `FOO= cmd`.
  const cleaned = Object.fromEntries(
    Object.entries(env).filter((kv): kv is [string, string] => kv[1] !== undefined && kv[1] !== ""),
  );
  const e = parseOrThrow(shape, cleaned);
  // NATS for the data sync only when NATS_URL is given (the monolith also runs alone).
  if (cleaned.NATS_URL) refuseDefaultNamespaceUnderTest(env, "legacy");
  const events = cleaned.NATS_URL
    ? toEventsConfig(parseOrThrow(z.object(eventsEnvShape()), cleaned))
    : undefined;
  const syncKeys = readSealingKeys(cleaned, "LEGACY_SYNC_KEY");
  const syncKey = syncKeys?.[0];
  if (events && !syncKey)
    throw new Error(
      "bad configuration: LEGACY_SYNC_KEY (or LEGACY_SYNC_KEY_FILE) is required with NATS_URL: it seals the users' password hashes, emails and names the CDC relay publishes (`meshctl secrets` makes one)",
    );
  return {
    host: e.HOST,
    port: e.PORT,
    databaseUrl: e.DATABASE_URL,
    logLevel: e.LOG_LEVEL,
    tokenSecret: e.LEGACY_TOKEN_SECRET,
    seed: e.LEGACY_SEED === "true",
    events,
    syncKey,
  };
}
