import { openDatabase } from "@meshwork/db";
import { createLogger } from "@meshwork/telemetry";
import postgres from "postgres";
import { createLegacyApp } from "./app.js";
import { loadConfig } from "./config.js";
import { migrate } from "./schema.js";
import { seed } from "./seed.js";
import { cdcSchema, startCdcRelay } from "./sync/cdc-relay.js";
import { startOrderSync } from "./sync/order-sync.js";
import { startReverseSync } from "./sync/reverse-sync.js";

const config = loadConfig();
const sql = postgres(config.databaseUrl, { max: 10, idle_timeout: 30, onnotice: () => {} });
const app = createLegacyApp({ sql, tokenSecret: config.tokenSecret, logLevel: config.logLevel });
if (!config.tokenSecret)
  app.log.warn("LEGACY_TOKEN_SECRET is not set: session tokens last as long as this process");
const applied = await migrate(sql);
const seeded = config.seed ? await seed(sql) : false;

// The migration's data sync, when NATS is configured: the CDC relay (legacy -> LEGACY stream)
// and the reverse sync (the new services' events -> legacy's tables). Not request handlers:
// they run beside the monolith on its own database, and the monolith's code knows nothing of them.
const sync =
  config.events && config.syncKey
    ? await (async (events, syncKey) => {
        const logger = createLogger({ service: "legacy", level: config.logLevel });
        const database = await openDatabase(
          {
            url: config.databaseUrl,
            dataDir: "",
            pool: { max: 4, idleTimeoutS: 30, maxLifetimeS: 0, connectTimeoutS: 10 },
          },
          cdcSchema,
        );
        const relay = await startCdcRelay({ database, events, syncKey, logger });
        const reverse = await startReverseSync({ database, events, nc: relay.publisher.nc, logger });
        const orders = await startOrderSync({ database, events, nc: relay.publisher.nc, logger });
        return {
          async stop() {
            await orders.stop();
            await reverse.stop();
            await relay.stop();
            await database.close();
          },
        };
      })(config.events, config.syncKey)
    : undefined;

await app.listen({ host: config.host, port: config.port });
const address = app.server.address();
const port = typeof address === "object" && address ? address.port : config.port;
app.log.info({ host: config.host, port, migrations: applied, seeded, sync: !!sync }, "listening");

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    if (stopping) return;
    stopping = true;
    void app
      .close()
      .then(() => sync?.stop())
      .then(() => sql.end({ timeout: 5 }))
      .then(() => process.exit(0));
  });
}
