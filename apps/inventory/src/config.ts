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

const shape = {
  ...runtimeEnvShape({ port: 50052 }),
  ...databaseEnvShape({ dataDir: ".meshwork/data/inventory" }),
  ...discoveryEnvShape(),
  ...eventsEnvShape(),
  ...cacheEnvShape(),
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
  discovery: DiscoveryConfig;
  events: EventsConfig;
  cache: CacheConfig;
}

/** Reads the inventory service's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  refuseDefaultNamespaceUnderTest(env, "inventory");
  const e = parseEnv(shape, env);
  return {
    runtime: toRuntimeConfig(e),
    db: toDatabaseConfig(e),
    discovery: toDiscoveryConfig(e),
    events: toEventsConfig(e),
    cache: toCacheConfig(e),
  };
}
