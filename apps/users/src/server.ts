import { fileURLToPath } from "node:url";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { openDatabase } from "@meshwork/db";
import { createService, type Service } from "@meshwork/runtime";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import { schema } from "./adapters/db/schema.js";
import { type App, createApp } from "./app.js";
import type { Config } from "./config.js";
import { createUserServiceHandlers } from "./ports/rpc/user-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));

/**
 * Wires the users service: its database (migrated before it reports SERVING), its handlers,
 * and the JWKS document at `GET /.well-known/jwks.json`.
 */
export async function createUsersService(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
): Promise<Service> {
  const database = await openDatabase(config.db, schema);
  let app: App | undefined;
  // Calls are refused (UNAVAILABLE) until the service is SERVING, which is after `prepare`.
  const ready = (): App => {
    if (!app) throw new Error("users app used before start-up finished");
    return app;
  };
  return createService({
    name: "users",
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
        res.writeHead(200, { "content-type": "application/json", "cache-control": "public, max-age=300" });
        res.end(JSON.stringify(app.keys.jwks));
      },
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      app = await createApp(config, database);
    },
    readiness: [{ name: "database", check: () => database.ping() }],
    onShutdown: () => database.close(),
  });
}
