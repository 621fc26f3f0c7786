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
  ...runtimeEnvShape({ port: 50055 }),
  ...databaseEnvShape({ dataDir: ".meshwork/data/notifications" }),
  ...eventsEnvShape(),
  ...discoveryEnvShape(),
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
  events: EventsConfig;
  discovery: DiscoveryConfig;
}

/** Reads the notifications service's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  refuseDefaultNamespaceUnderTest(env, "notifications");
  const e = parseEnv(shape, env);
  return {
    runtime: toRuntimeConfig(e),
    db: toDatabaseConfig(e),
    events: toEventsConfig(e),
    discovery: toDiscoveryConfig(e),
  };
}
