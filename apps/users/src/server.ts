import { fileURLToPath } from "node:url";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import { meshStreams, type OutboxPublisher, startOutboxPublisher } from "@meshwork/events";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import { prepareBootstrapSecret } from "./adapters/db/bootstrap-store.js";
import { outbox, schema } from "./adapters/db/schema.js";
import { type App, createApp } from "./app.js";
import type { Config } from "./config.js";
import { createUserServiceHandlers } from "./ports/rpc/user-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);

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
      app = await createApp(config, database, service.telemetry.meter, (err) =>
        service.logger.warn({ err }, "reloading the signing keys failed"),
      );
      if (!config.keys.encryptionKey) {
        service.logger.warn(
          "signing keys are stored unencrypted: set USERS_KEY_ENCRYPTION_KEY or USERS_KEY_ENCRYPTION_KEY_FILE outside development",
        );
      }
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
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      app?.keys.close();
      await discovery.close();
      await publisher?.stop();
      await database.close();
    },
  });
  return service;
}
