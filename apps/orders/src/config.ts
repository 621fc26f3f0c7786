import { type CacheConfig, cacheEnvShape, toCacheConfig } from "@meshwork/cache";
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
import { DEFAULT_WATCHES_PER_USER } from "./app/watch-limit.js";

const ms = (d: number) => z.coerce.number().int().positive().default(d);

const shape = {
  ...runtimeEnvShape({ port: 50054 }),
  ...databaseEnvShape({ dataDir: ".meshwork/data/orders" }),
  ...eventsEnvShape(),
  ...discoveryEnvShape(),
  /** The product cache's shared tier and bounds (its TTL and size are the two PRODUCT_CACHE_* below). */
  ...cacheEnvShape(),
  /** A claimed saga is this executor's for this long without progress; then another takes it. */
  SAGA_LEASE_MS: ms(10_000),
  SAGA_POLL_MS: ms(250),
  /** Sagas run side by side by one instance. */
  SAGA_CONCURRENCY: ms(64),
  /** Attempts of a step before the order is cancelled (compensations never give up). */
  SAGA_MAX_ATTEMPTS: ms(5),
  SAGA_RETRY_INITIAL_MS: ms(100),
  SAGA_RETRY_MAX_MS: ms(2_000),
  SAGA_STEP_TIMEOUT_MS: ms(5_000),
  /**
   * How long a step may find inventory or payments unavailable (down, restarting, breaker open,
   * timing out) before the order is cancelled, from the step's first such failure; retries
   * meanwhile back off up to SAGA_RETRY_MAX_MS and do not spend SAGA_MAX_ATTEMPTS.
   */
  SAGA_TRANSIENT_BUDGET_MS: ms(60_000),
  /** Per upstream (inventory, payments): consecutive failures that open its breaker... */
  UPSTREAM_BREAKER_FAILURES: ms(5),
  /** ...and how long it stays open before a probe. */
  UPSTREAM_BREAKER_HALF_OPEN_MS: ms(5_000),
  UPSTREAM_TIMEOUT_MS: ms(3_000),
  /**
   * How long a product's price is reused at placement (0: ask inventory every time); a price
   * change drops it at once through inventory's ProductUpdated...
   */
  PRODUCT_CACHE_TTL_MS: z.coerce.number().int().nonnegative().default(60_000),
  /** ...and how many products are remembered. */
  PRODUCT_CACHE_MAX: ms(10_000),
  /** WatchOrder streams one user may hold open at once; more are RESOURCE_EXHAUSTED. */
  WATCH_MAX_PER_USER: ms(DEFAULT_WATCHES_PER_USER),
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
  events: EventsConfig;
  discovery: DiscoveryConfig;
  saga: {
    leaseMs: number;
    pollMs: number;
    concurrency: number;
    retry: { maxAttempts: number; initialDelayMs: number; maxDelayMs: number; transientBudgetMs: number };
    stepTimeoutMs: number;
  };
  upstream: { breakerFailures: number; halfOpenAfterMs: number; timeoutMs: number };
  catalogue: { ttlMs: number; max: number };
  /** The product cache's shared tier, negative TTL, byte bound and deadline. */
  cache: CacheConfig;
  /** WatchOrder streams one user may hold open at once; absent: DEFAULT_WATCHES_PER_USER. */
  watchMaxPerUser?: number;
}

/** Reads the orders service's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  refuseDefaultNamespaceUnderTest(env, "orders");
  const e = parseEnv(shape, env);
  return {
    runtime: toRuntimeConfig(e),
    db: toDatabaseConfig(e),
    events: toEventsConfig(e),
    discovery: toDiscoveryConfig(e),
    saga: {
      leaseMs: e.SAGA_LEASE_MS,
      pollMs: e.SAGA_POLL_MS,
      concurrency: e.SAGA_CONCURRENCY,
      retry: {
        maxAttempts: e.SAGA_MAX_ATTEMPTS,
        initialDelayMs: e.SAGA_RETRY_INITIAL_MS,
        maxDelayMs: e.SAGA_RETRY_MAX_MS,
        transientBudgetMs: e.SAGA_TRANSIENT_BUDGET_MS,
      },
      stepTimeoutMs: e.SAGA_STEP_TIMEOUT_MS,
    },
    upstream: {
      breakerFailures: e.UPSTREAM_BREAKER_FAILURES,
      halfOpenAfterMs: e.UPSTREAM_BREAKER_HALF_OPEN_MS,
      timeoutMs: e.UPSTREAM_TIMEOUT_MS,
    },
    catalogue: { ttlMs: e.PRODUCT_CACHE_TTL_MS, max: e.PRODUCT_CACHE_MAX },
    cache: toCacheConfig(e),
    watchMaxPerUser: e.WATCH_MAX_PER_USER,
  };
}
