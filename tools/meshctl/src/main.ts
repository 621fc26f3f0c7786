#!/usr/bin/env node
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { checkHealth } from "./health.js";
import { findServices } from "./services.js";
import { renderTable } from "./table.js";
import { up } from "./up.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

const usage = `meshctl: run and inspect the Meshwork mesh

  meshctl up [--ports auto] [--database-url URL] [--db-prefix NAME] [--log-level LEVEL]
      Start every service, wait until all are SERVING, print the status table and stream the
      logs; Ctrl-C stops everything. Without a database URL (flag or DATABASE_URL) each service
      keeps its data in embedded PGlite under .meshwork/data/<service>; with one, each service
      gets its own database and login role on that server, named <prefix>_<service>
      (prefix "meshwork" unless --db-prefix or MESHWORK_DB_PREFIX says otherwise).
  meshctl status
      Health of every service at its default address.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      ports: { type: "string" },
      "database-url": { type: "string" },
      "log-level": { type: "string" },
      "db-prefix": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !command || command === "help") {
    process.stdout.write(usage);
    return command ? 0 : 2;
  }
  const services = findServices(root);
  switch (command) {
    case "up": {
      if (values.ports !== undefined && values.ports !== "auto" && values.ports !== "default") {
        process.stderr.write("--ports takes `auto` or `default`\n");
        return 2;
      }
      return up({
        root,
        services,
        home: process.env.MESHWORK_HOME ?? join(root, ".meshwork"),
        autoPorts: values.ports === "auto",
        databaseUrl: values["database-url"] ?? (process.env.DATABASE_URL || undefined),
        dbPrefix: values["db-prefix"] ?? process.env.MESHWORK_DB_PREFIX ?? "meshwork",
        logLevel: values["log-level"] ?? process.env.LOG_LEVEL ?? "info",
        out: process.stdout,
      });
    }
    case "status": {
      const rows = await Promise.all(
        services.map(async (s) => {
          const address = `127.0.0.1:${s.port}`;
          return [s.name, address, await checkHealth(address)];
        }),
      );
      process.stdout.write(`${renderTable(["SERVICE", "ADDRESS", "HEALTH"], rows)}\n`);
      return rows.every((r) => r[2] === "SERVING") ? 0 : 1;
    }
    default:
      process.stderr.write(`unknown command "${command}"\n\n${usage}`);
      return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));
