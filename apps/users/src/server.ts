import { fileURLToPath } from "node:url";
import { createRegistry } from "@bufbuild/protobuf";
import { file_meshwork_legacy_v1_events } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { type DatabaseHandle, databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import {
  createForeignConsumer,
  type EventConsumer,
  meshStreams,
  type OutboxPublisher,
  type StreamSpec,
  startOutboxPublisher,
} from "@meshwork/events";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import { type ConsumerInfo, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { prepareBootstrapSecret } from "./adapters/db/bootstrap-store.js";
import { inbox, outbox, schema, type UsersSchema } from "./adapters/db/schema.js";
import { type App, createApp } from "./app.js";
import type { Config } from "./config.js";
import { onLegacyUserChanged, redactLegacyUserDeadLetter } from "./ports/events/legacy-user-changed.js";
import { createUserServiceHandlers } from "./ports/rpc/user-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
/** The durable consumer of the legacy monolith's users on the LEGACY_USERS stream. */
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
 * Strangler fig, identity follows the traffic: a durable consumer on legacy's LEGACY_USERS stream
 * applies the monolith's users here, idempotently by capture sequence. Legacy owns that stream:
 * users never declares it (its NATS user may not) and waits for it if legacy has not created it
 * yet, so users starts whether or not the monolith runs. An older mesh's user captures on LEGACY
 * are drained first (see {@link drainOldLegacyUserSync}).
 */
async function startLegacyUserSync(
  config: Config,
  nc: NatsConnection,
  database: DatabaseHandle<UsersSchema>,
  service: Service,
): Promise<EventConsumer> {
  const ns = config.events.namespace;
  const host = {
    service: "users",
    config: config.events,
    nc,
    database,
    inbox,
    logger: service.logger,
    telemetry: service.telemetry,
  };
  const sync = {
    durable: LEGACY_USER_SYNC_DURABLE,
    registry: createRegistry(file_meshwork_legacy_v1_events),
    handlers: {
      "meshwork.legacy.v1.UserChanged": onLegacyUserChanged(service.logger, config.legacySyncKeys),
    },
    redactDeadLetter: redactLegacyUserDeadLetter,
  };
  const current = createForeignConsumer(host, { ...sync, stream: meshStreams.legacyUsers(ns) });
  const old = await drainOldLegacyUserSync(nc, meshStreams.legacy(ns), service.logger, (stream) =>
    createForeignConsumer(host, { ...sync, stream, durableExists: true }),
  );
  await current.start();
  return {
    start: async () => {},
    async stop() {
      await current.stop();
      await old?.stop();
    },
  };
}

/**
 * Upgrade from a mesh whose legacy published UserChanged on LEGACY (`meshwork.legacy.v1.UserChanged`):
 * if users' old durable there still exists, it keeps consuming it (what was not applied at the
 * upgrade, and what a legacy not upgraded yet still publishes), so no capture is lost; the capture
 * sequence guard makes the order between the two streams irrelevant. Once LEGACY holds no
 * UserChanged at all (they age out with its 7-day max_age) and nothing is pending, the old durable
 * is deleted at start and never comes back. A mesh that never had it creates nothing.
 */
async function drainOldLegacyUserSync(
  nc: NatsConnection,
  legacy: StreamSpec,
  logger: Logger,
  consumerOf: (legacy: StreamSpec) => EventConsumer,
): Promise<EventConsumer | undefined> {
  const stream = legacy.name;
  const jsm = await jetstreamManager(nc);
  let info: ConsumerInfo;
  try {
    info = await jsm.consumers.info(stream, LEGACY_USER_SYNC_DURABLE);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.status === 404) return undefined;
    throw err;
  }
  const subject = info.config.filter_subject ?? "";
  const held = (await jsm.streams.info(stream, { subjects_filter: subject })).state.subjects?.[subject] ?? 0;
  if (held === 0 && info.num_pending + info.num_ack_pending === 0) {
    await jsm.consumers.delete(stream, LEGACY_USER_SYNC_DURABLE);
    logger.info({ stream, durable: LEGACY_USER_SYNC_DURABLE }, "old legacy user sync drained: deleted");
    return undefined;
  }
  logger.info(
    { stream, durable: LEGACY_USER_SYNC_DURABLE, held, pending: info.num_pending },
    "draining the legacy user captures an older legacy left on its shared stream",
  );
  const consumer = consumerOf(legacy);
  await consumer.start();
  return consumer;
}
