import { type DatabaseConfig, databaseEnvShape, toDatabaseConfig } from "@meshwork/db";
import { type DiscoveryConfig, discoveryEnvShape, toDiscoveryConfig } from "@meshwork/discovery";
import {
  type EventsConfig,
  eventsEnvShape,
  refuseDefaultNamespaceUnderTest,
  toEventsConfig,
} from "@meshwork/events";
import { parseEnv, type RuntimeConfig, runtimeEnvShape, toRuntimeConfig } from "@meshwork/runtime";
import { z } from "zod";
import type { Faults } from "./domain/payment.js";

const shape = {
  ...runtimeEnvShape({ port: 50053 }),
  ...databaseEnvShape({ dataDir: ".meshwork/data/payments" }),
  ...eventsEnvShape(),
  ...discoveryEnvShape(),
  /** The simulated provider's fault switch at start-up (SetFaults changes it at run time). */
  PAYMENTS_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0),
  PAYMENTS_ADDED_LATENCY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
  PAYMENTS_HARD_DOWN: z.stringbool().default(false),
  /** Authorizations above this many minor units are declined; 0: no limit. */
  PAYMENTS_DECLINE_ABOVE_MINOR: z.coerce.number().int().min(0).default(1_000_000),
  /**
   * How often the hold sweeper voids, at the provider, the ids of tombstones whose void the
   * provider has not confirmed (and how old such a tombstone must be first).
   */
  PAYMENTS_HOLD_SWEEP_MS: z.coerce.number().int().min(10).max(3_600_000).default(5_000),
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
  events: EventsConfig;
  discovery: DiscoveryConfig;
  faults: Faults;
  holdSweepMs: number;
}

/** Reads the payments service's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  refuseDefaultNamespaceUnderTest(env, "payments");
  const e = parseEnv(shape, env);
  return {
    runtime: toRuntimeConfig(e),
    db: toDatabaseConfig(e),
    events: toEventsConfig(e),
    discovery: toDiscoveryConfig(e),
    faults: {
      failureRate: e.PAYMENTS_FAILURE_RATE,
      addedLatencyMs: e.PAYMENTS_ADDED_LATENCY_MS,
      hardDown: e.PAYMENTS_HARD_DOWN,
      declineAboveMinor: e.PAYMENTS_DECLINE_ABOVE_MINOR,
    },
    holdSweepMs: e.PAYMENTS_HOLD_SWEEP_MS,
  };
}
