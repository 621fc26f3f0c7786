import { fileURLToPath } from "node:url";
import { createRegistry } from "@bufbuild/protobuf";
import { file_meshwork_legacy_v1_events } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { type DatabaseHandle, databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import {
  createEventConsumer,
  deadLetterSubject,
  type EventConsumer,
  meshStreams,
  type OutboxPublisher,
  provision,
  startOutboxPublisher,
} from "@meshwork/events";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { prepareBootstrapSecret } from "./adapters/db/bootstrap-store.js";
import { inbox, outbox, schema, type UsersSchema } from "./adapters/db/schema.js";
import { type App, createApp } from "./app.js";
import type { Config } from "./config.js";
import { onLegacyUserChanged, redactLegacyUserDeadLetter } from "./ports/events/legacy-user-changed.js";
import { createUserServiceHandlers } from "./ports/rpc/user-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
/** The durable consumer of the legacy monolith's users on the LEGACY stream. */
export const LEGACY_USER_SYNC_DURABLE = "users-legacy-sync";

/**
 * Wires the users service: its database (migrated before it reports SERVING), its handlers,
 * the JWKS document at `GET /.well-known/jwks.json`, and the relay that publishes its outbox to
 * the USERS stream. NATS is needed to start (streams are provisioned then), not to serve: while
 * NATS is away, registrations keep committing and their events wait in the outbox.
 */
export async function createUsersService(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
): Promise<Service> {
  const database = await openDatabase(config.db, schema);
  const discovery = createDiscovery(config.discovery, { service: "users", version: VERSION });
  let app: App | undefined;
  let publisher: OutboxPublisher | undefined;
  let legacySync: EventConsumer | undefined;
  // Calls are refused (UNAVAILABLE) until the service is SERVING, which is after `prepare`.
  const ready = (): App => {
    if (!app) throw new Error("users app used before start-up finished");
    return app;
  };
  const service: Service = createService({
    name: "users",
    version: VERSION,
    config: config.runtime,
    files: [file_meshwork_users_v1_users],
    services: [UserService],
    ...observe,
    routes(router) {
      router.service(UserService, createUserServiceHandlers(ready));
    },
    httpRoutes: {
      "/.well-known/jwks.json": (_req, res) => {
        if (!app) {
          res.writeHead(503, { "retry-after": "1" });
          res.end();
          return;
        }
        // Short: after a rotation the new key is here at once, and a dropped key leaves soon.
        res.writeHead(200, { "content-type": "application/json", "cache-control": "public, max-age=60" });
        res.end(JSON.stringify(app.keys.current().jwks));
      },
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, service.telemetry.meter);
      app = await createApp(config, database, service.telemetry.meter, service.logger);
      if (!config.keys.encryptionKey)
        service.logger.warn(
          "signing keys are stored unencrypted: set USERS_KEY_ENCRYPTION_KEY or USERS_KEY_ENCRYPTION_KEY_FILE outside development",
        );
      const bootstrap = await prepareBootstrapSecret(database.db, config.bootstrap);
      // The secret itself never reaches a log line: the operator reads the file (or gave it).
      if (bootstrap.state === "generated") {
        service.logger.warn(
          { file: bootstrap.file },
          "no admin exists yet: a one-time bootstrap secret was written to this file (mode 0600); create the first admin with `meshctl admin create --email <you>`",
        );
      } else if (bootstrap.state === "configured") {
        service.logger.info("no admin exists yet: the configured bootstrap secret creates the first admin");
      }
      publisher = await startOutboxPublisher({
        service: "users",
        config: config.events,
        stream: meshStreams.users(config.events.namespace, { replicas: config.events.streamReplicas }),
        database,
        table: outbox,
        logger: service.logger,
        tracer: service.telemetry.tracer,
        meter: service.telemetry.meter,
      });
      legacySync = await startLegacyUserSync(config, publisher.nc, database, service);
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      app?.keys.close();
      await discovery.close();
      await legacySync?.stop();
      await publisher?.stop();
      await database.close();
    },
  });
  return service;
}

/**
 * Strangler fig, identity follows the traffic: a durable consumer on the LEGACY stream (only
 * its UserChanged subject) applies the monolith's users here, idempotently by capture sequence.
 * The stream is declared here too, so users starts whether or not the monolith runs.
 */
async function startLegacyUserSync(
  config: Config,
  nc: NatsConnection,
  database: DatabaseHandle<UsersSchema>,
  service: Service,
): Promise<EventConsumer> {
  const ns = config.events.namespace;
  const copies = { replicas: config.events.streamReplicas };
  const legacy = meshStreams.legacy(ns, copies);
  const deadLetters = meshStreams.deadLetters(ns, "users", copies);
  const filterSubject = `${ns}meshwork.legacy.v1.UserChanged`;
  await provision(await jetstreamManager(nc), {
    streams: [legacy, deadLetters],
    consumers: [{ stream: legacy.name, durable: LEGACY_USER_SYNC_DURABLE, filterSubject }],
  });
  const consumer = createEventConsumer({
    js: jetstream(nc),
    database,
    inbox,
    stream: legacy.name,
    durable: LEGACY_USER_SYNC_DURABLE,
    registry: createRegistry(file_meshwork_legacy_v1_events),
    handlers: { "meshwork.legacy.v1.UserChanged": onLegacyUserChanged(service.logger) },
    maxDeliver: config.events.consumer.maxDeliver,
    backoffMs: config.events.consumer.backoffMs,
    deadLetterSubject: deadLetterSubject(ns, "users", LEGACY_USER_SYNC_DURABLE),
    redactDeadLetter: redactLegacyUserDeadLetter,
    logger: service.logger,
    tracer: service.telemetry.tracer,
    meter: service.telemetry.meter,
  });
  await consumer.start();
  return consumer;
}
