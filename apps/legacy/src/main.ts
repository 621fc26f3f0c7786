import postgres from "postgres";
import { createLegacyApp } from "./app.js";
import { loadConfig } from "./config.js";
import { migrate } from "./schema.js";
import { seed } from "./seed.js";

const config = loadConfig();
const sql = postgres(config.databaseUrl, { max: 10, idle_timeout: 30, onnotice: () => {} });
const app = createLegacyApp({ sql, tokenSecret: config.tokenSecret, logLevel: config.logLevel });
if (!config.tokenSecret)
  app.log.warn("LEGACY_TOKEN_SECRET is not set: session tokens last as long as this process");
const applied = await migrate(sql);
const seeded = config.seed ? await seed(sql) : false;
await app.listen({ host: config.host, port: config.port });
const address = app.server.address();
const port = typeof address === "object" && address ? address.port : config.port;
app.log.info({ host: config.host, port, migrations: applied, seeded }, "listening");

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    if (stopping) return;
    stopping = true;
    void app
      .close()
      .then(() => sql.end({ timeout: 5 }))
      .then(() => process.exit(0));
  });
}
