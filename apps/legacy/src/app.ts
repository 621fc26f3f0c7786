import { randomBytes } from "node:crypto";
import Fastify, { type FastifyInstance } from "fastify";
import type { Sql } from "postgres";
import { createCallerOf, registerErrorHandlers } from "./http.js";
import { registerCatalogueRoutes } from "./routes/catalogue.js";
import { registerOrderRoutes } from "./routes/orders.js";
import { registerUserRoutes } from "./routes/users.js";

export interface LegacyAppOptions {
  sql: Sql;
  /** HS256 secret of the session tokens; default: random per process. */
  tokenSecret?: string;
  logLevel?: string;
}

/**
 * The monolith: a Fastify app over one Postgres database. Each handler reads and writes the
 * tables of every "domain" freely, in one transaction where it must, as monoliths do.
 */
export function createLegacyApp(options: LegacyAppOptions): FastifyInstance {
  const { sql } = options;
  const secret = new TextEncoder().encode(options.tokenSecret ?? randomBytes(32).toString("base64url"));
  const app = Fastify({
    logger: { level: options.logLevel ?? "info", base: { service: "legacy" } },
    bodyLimit: 1 << 20,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });
  registerErrorHandlers(app);
  const caller = createCallerOf(secret);
  app.get("/healthz", async () => ({ status: "SERVING" }));
  registerUserRoutes(app, sql, secret, caller);
  registerCatalogueRoutes(app, sql);
  registerOrderRoutes(app, sql, caller);
  return app;
}
