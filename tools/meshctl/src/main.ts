#!/usr/bin/env node
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { meshworkFiles } from "@meshwork/contracts";
import { DefaultNamespaceUnderTestError, refuseDefaultNamespaceUnderTest } from "@meshwork/events";
import { adminCreateCommand } from "./admin.js";
import { fetchCacheRows } from "./cache-status.js";
import { COMPOSE_NATS_CONFIG_PATH, renderComposeNatsConfig, writeComposeSecrets } from "./compose-secrets.js";
import { consoleCommand, DEFAULT_CONSOLE_ADDRESS } from "./console.js";
import { demo } from "./demo.js";
import { dlqList, dlqReplay } from "./dlq.js";
import { ENVOY_CONFIG_PATH, ENVOY_DESCRIPTORS_PATH, renderDescriptorSet, renderEnvoyYaml } from "./envoy.js";
import { checkHealth, gatewayReady, legacyHealth } from "./health.js";
import { K8S_DEV_SECRETS_DIR, renderK8s, writeK8sSecrets } from "./k8s.js";
import { keysRotate } from "./keys.js";
import { type LogLevel, parseLogLevel } from "./log-level.js";
import { adminNatsCredentials } from "./nats-auth.js";
import { registryBucketFor, registryRows } from "./registry.js";
import { releaseCheck } from "./release/check.js";
import { InvalidServiceSpecError } from "./scaffold/names.js";
import { newService } from "./scaffold/new-service.js";
import { findServices } from "./services.js";
import { findLegacyDatabaseUrl, stranglerCommand } from "./strangler.js";
import { stranglerDemo } from "./strangler-demo.js";
import { renderTable } from "./table.js";
import { logsCommand, traceCommand, tracesCommand } from "./traces.js";
import { parseReplicas, type SupervisionReport, supervisionFile, supervisionTable, up } from "./up.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

const usage = `meshctl: run and inspect the Meshwork mesh

  meshctl up [--ports auto] [--database-url URL] [--db-prefix NAME] [--log-level LEVEL]
             [--replicas SERVICE=N,...]
      Start every service, wait until all are SERVING (saying every 30 s which it still waits
      for, and why), print the status table and stream the logs at --log-level (LOG_LEVEL,
      default info; the processes log info at least, since up reads their "listening" line);
      Ctrl-C stops everything. When every process has been left down, up says so and exits 1. A process that exits is restarted after a growing pause
      (0.5 s doubling to 10 s) at the same address; after 5 crashes within 60 s it is left down
      and reported, and the rest keeps running. Each service gets its own database and login
      role, named <prefix>_<service> (prefix "meshwork" unless --db-prefix or MESHWORK_DB_PREFIX
      says otherwise), on the server of the database URL (flag or DATABASE_URL) or, without one,
      on an embedded PostgreSQL server that \`up\` runs with its data in .meshwork/postgres, on
      127.0.0.1:5432 (MESHWORK_PG_PORT; a free port when taken or with --ports auto).
      The mesh's spans go to a trace receiver embedded in \`up\` (OTLP/HTTP, protobuf and JSON) at
      --otlp HOST:PORT (default 127.0.0.1:4318, a free port with --ports auto; \`off\` to not run it).
      The web console (services, API explorer, traces, resilience) at --console HOST:PORT
      (default 127.0.0.1:9400, loopback only; a free port with --ports auto; \`off\` to not run it).
  meshctl console [--listen HOST:PORT] [--gateway URL] [--receiver URL]
      The web console against a mesh that is already running (default 127.0.0.1:9400; the gateway
      and receiver \`up\` noted, else 127.0.0.1:8080 and 127.0.0.1:4318). Stopping and restarting
      processes is in the console \`up\` runs itself.
      --replicas orders=3,inventory=2 runs several instances of a service (a scale-out rehearsal):
      the first at the service's port, the others (orders#2, orders#3) on free ports, one
      database; each announces itself in the registry and the gateway and callers balance.
  meshctl new service NAME [--port N] [--publishes-events] [--consumes-events SERVICE,...]
      Add a service: its proto (access policy and idempotency level on every method), generated
      code, apps/NAME in the house layout (config, server, ports/rpc, app/commands and queries,
      domain, adapters/db with schema and first migration, tests), linked as a workspace, built,
      and registered with the gateway's route table, Envoy, docker-compose, compose's Postgres,
      NATS and Prometheus, Kubernetes (infra/k8s), and \`meshctl up\`. --publishes-events adds an outbox and an ItemCreated
      event; --consumes-events adds durable consumers with an inbox on those services' streams.
      Also \`npm run new -- service NAME\`.
  meshctl traces [--limit N] [--service NAME]
      Recent traces from the running mesh's receiver: root method, services, spans, duration, status.
  meshctl trace (TRACE-ID | --last | --order ORDER-ID) [--width N]
      One trace as a waterfall: a row per span under its parent (an event consumer under the span
      it links to), service, start offset, a bar on the timeline, duration, status; events beneath.
  meshctl logs --trace TRACE-ID
      Every log line of every process of the mesh carrying that trace id, in time order.
      These three ask --receiver URL (else MESHWORK_RECEIVER_URL, else the one \`up\` runs).
  meshctl status
      Health of every service at its default address, the state of each process under a running
      \`up\` (running, backing-off, given-up; restarts; last exit), then every instance in the
      discovery registry with its address, version, age and health.
  meshctl admin create --email EMAIL [--password-file FILE] [--display-name NAME]
                       [--secret-file FILE] [--gateway URL]
      Create the first admin through the gateway with the one-time bootstrap secret the users
      service wrote to .meshwork/bootstrap-secret (or --secret-file) while no admin exists; the
      password comes from --password-file, else stdin (typed unseen on a terminal). The secret is
      spent: later admins are granted by admins.
  meshctl demo [--gateway URL]
  meshctl demo strangler [--gateway URL] [--gateway-admin URL]
      The strangler-fig migration of the catalogue: all on legacy, backfill, shadow and the diff
      report, the reads cut over to 25% then 100%, the verdict.
      Against a running mesh (default gateway http://127.0.0.1:8080): a customer places orders
      (two go through, one runs out of stock, one meets a payment failure switched on for it),
      then the notifications and the consistency checker's verdict. Its admin is one it creates
      itself through the bootstrap secret on its first run (random password, kept owner-only in
      .meshwork/demo-admin.json).
  meshctl strangler status|set <route> <percent>|shadow <route> on|off|diffs <route> [--gateway-admin URL]
      The legacy REST API's cutover at the gateway (admin default http://127.0.0.1:9901): per
      route its side, weight, shadow, traffic share, diff rate and latency of both sides; move a
      route's users to the new service by percent (sticky per user), shadow it, read its diffs.
  meshctl envoy [--check] [--rate-limits SPEC]
      Render infra/envoy/envoy.yaml (Envoy v3) from the contracts: the gateway's routes, access
      policies, retries, rate limits (SPEC as the gateway's RATE_LIMITS) and CORS origins
      (CORS_ORIGINS, as the gateway's; none by default). --check only says
      whether the committed file is current (exit 1 when stale).
  meshctl secrets [--check]
      For docker-compose: write .meshwork/compose.env (owner-only; existing values kept) with every
      process's identity key and NATS password and the trust list, and render
      infra/nats/nats.conf (users and permissions; no secret in it). Then
      \`docker compose --env-file .meshwork/compose.env up --build\`. --check only says whether the
      committed nats.conf is current.
  meshctl k8s [--check] [--secrets]
      Render the parts of infra/k8s/base that follow from the services of the repository (a
      Deployment, headless Service, ServiceAccount, PDB, HPA, NetworkPolicy and Postgres per
      service; the NATS cluster's users and passwords; the dev overlay's Secret list). --check
      only says whether the committed files are current. --secrets writes the dev overlay's
      owner-only env files (keys, passwords; existing values kept) into
      infra/k8s/overlays/dev/secrets/, git-ignored.
  meshctl release check [--against GIT-REF]
      \`buf breaking\` against GIT-REF (default: the merge base of HEAD and main, as CI) with the
      release rule: a breaking change to a service's contract needs a pending major changeset of
      that service (\`npx changeset\`); one outside any service's contract is refused. Exit 1 when
      refused, with each finding and its verdict.
  meshctl keys rotate [--gateway URL] [--token TOKEN]
      Rotate the users service's token signing key (through the gateway, default
      http://127.0.0.1:8080, with an admin's access token: --token or MESHWORK_TOKEN). The new
      key signs from now on; the old one stays in the JWKS document, so the tokens it signed keep
      working until they expire, and is dropped after the overlap (USERS_KEY_OVERLAP_S).
  meshctl events dlq list [--service NAME] [--consumer DURABLE]
      Dead letters (events a consumer gave up on) with their error and delivery count.
  meshctl events dlq replay --service NAME [--consumer DURABLE] (SEQ... | --all)
      Publish dead letters again on their original subject, then remove them. --consumer: only
      that durable consumer's letters (--all), or refuse a named letter of another one.

  NATS: NATS_URL or --nats-url (default nats://127.0.0.1:4222). \`up\` starts the nats-server
  found on the PATH, with JetStream, when nothing answers there, with a user and permissions per
  process (.meshwork/nats-auth, owner-only). EVENTS_NAMESPACE prefixes
  streams and subjects and names the registry bucket (<namespace>_registry, else
  meshwork_registry; DISCOVERY_BUCKET overrides).
`;

/** `meshctl new service NAME ...`: exit 2 with the reason for a refused name or port. */
function newCommand(
  positionals: string[],
  values: { port?: string; "publishes-events"?: boolean; "consumes-events"?: string },
): number {
  const [what, name] = positionals;
  if (what !== "service" || !name || positionals.length > 2) {
    process.stderr.write(
      "usage: meshctl new service NAME [--port N] [--publishes-events] [--consumes-events SERVICE,...]\n",
    );
    return 2;
  }
  try {
    const { spec, written } = newService({
      root,
      name,
      port: values.port,
      publishesEvents: values["publishes-events"],
      consumesEvents: values["consumes-events"],
      say: (line) => process.stdout.write(`${line}\n`),
    });
    process.stdout.write(
      `\nwrote:\n${written.map((f) => `  ${f}`).join("\n")}\n\nnext: npm test -w @meshwork/${spec.name}, then npm start (it serves on ${spec.port}); commit it all.\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof InvalidServiceSpecError) {
      process.stderr.write(`meshctl new service: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

/** The running `meshctl up`'s view of its processes (crashes, restarts), if one runs. */
function readSupervision(home: string): SupervisionReport | undefined {
  try {
    const report = JSON.parse(readFileSync(supervisionFile(home), "utf8")) as SupervisionReport;
    process.kill(report.pid, 0); // throws when that `up` is gone (a stale file)
    return report;
  } catch {
    return undefined;
  }
}

/** The command line after the command: every option any command takes (each command checks its own). */
function parseOptions(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      "nats-url": { type: "string" },
      service: { type: "string" },
      consumer: { type: "string" },
      all: { type: "boolean" },
      ports: { type: "string" },
      "database-url": { type: "string" },
      "log-level": { type: "string" },
      "db-prefix": { type: "string" },
      check: { type: "boolean" },
      "rate-limits": { type: "string" },
      gateway: { type: "string" },
      "gateway-admin": { type: "string" },
      email: { type: "string" },
      "display-name": { type: "string" },
      "password-file": { type: "string" },
      "secret-file": { type: "string" },
      otlp: { type: "string" },
      console: { type: "string" },
      listen: { type: "string" },
      receiver: { type: "string" },
      limit: { type: "string" },
      last: { type: "boolean" },
      order: { type: "string" },
      trace: { type: "string" },
      width: { type: "string" },
      token: { type: "string" },
      secrets: { type: "boolean" },
      replicas: { type: "string" },
      against: { type: "string" },
      port: { type: "string" },
      "publishes-events": { type: "boolean" },
      "consumes-events": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(rest);
  } catch (err) {
    // parseArgs' own errors (ERR_PARSE_ARGS_*) are the user's input: one line, not a stack.
    if (!String((err as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS")) throw err;
    process.stderr.write(
      `meshctl ${command ?? ""}: ${(err as Error).message}\n(meshctl help lists the options)\n`,
    );
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || !command || command === "help") {
    process.stdout.write(usage);
    return command ? 0 : 2;
  }
  const services = findServices(root);
  // docker-compose runs every process of the repository, the legacy monolith among them.
  const composeServices = services;
  const home = process.env.MESHWORK_HOME ?? join(root, ".meshwork");
  const natsUrl = values["nats-url"] ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const namespace = process.env.EVENTS_NAMESPACE ?? "";
  const registryBucket = process.env.DISCOVERY_BUCKET || registryBucketFor(namespace);
  // On a NATS meshctl started, meshctl's own commands connect as its admin user.
  const natsAdmin = adminNatsCredentials(
    join(process.env.MESHWORK_HOME ?? join(root, ".meshwork"), "nats-auth"),
  );
  switch (command) {
    case "up": {
      try {
        refuseDefaultNamespaceUnderTest(process.env, "meshctl up");
      } catch (err) {
        if (!(err instanceof DefaultNamespaceUnderTestError)) throw err;
        process.stderr.write(`${err.message}\n`);
        return 2;
      }
      if (values.ports !== undefined && values.ports !== "auto" && values.ports !== "default") {
        process.stderr.write("--ports takes `auto` or `default`\n");
        return 2;
      }
      const pgPort = process.env.MESHWORK_PG_PORT ? Number(process.env.MESHWORK_PG_PORT) : undefined;
      if (pgPort !== undefined && !(Number.isInteger(pgPort) && pgPort > 0 && pgPort < 65536)) {
        process.stderr.write("MESHWORK_PG_PORT takes a port number (1-65535)\n");
        return 2;
      }
      let replicas: Record<string, number> = {};
      let logLevel: LogLevel;
      try {
        replicas = parseReplicas(values.replicas ?? "", services);
        logLevel = parseLogLevel(values["log-level"] ?? (process.env.LOG_LEVEL || "info"));
      } catch (err) {
        process.stderr.write(`${(err as Error).message}\n`);
        return 2;
      }
      return up({
        replicas,
        root,
        services,
        home,
        autoPorts: values.ports === "auto",
        databaseUrl: values["database-url"] ?? (process.env.DATABASE_URL || undefined),
        postgresPort: pgPort,
        natsUrl,
        registryBucket,
        namespace,
        dbPrefix: values["db-prefix"] ?? process.env.MESHWORK_DB_PREFIX ?? "meshwork",
        logLevel,
        otlp: values.otlp ?? (values.ports === "auto" ? "127.0.0.1:0" : "127.0.0.1:4318"),
        console: values.console ?? (values.ports === "auto" ? "127.0.0.1:0" : DEFAULT_CONSOLE_ADDRESS),
        out: process.stdout,
      });
    }
    case "console":
      return consoleCommand({
        home,
        address: values.listen ?? DEFAULT_CONSOLE_ADDRESS,
        gateway: values.gateway,
        receiver: values.receiver,
        natsUrl,
        registryBucket,
        namespace,
        out: process.stdout,
        err: process.stderr,
      });
    case "new":
      return newCommand(positionals, values);
    case "traces":
    case "trace":
    case "logs":
      return traceCommands(command, values, positionals);
    case "status": {
      const rows = await Promise.all(
        services.map(async (s) => {
          const address = `127.0.0.1:${s.port}`;
          if (s.kind === "gateway")
            return [s.name, address, await gatewayReady(`127.0.0.1:${s.adminPort ?? 9901}`)];
          if (s.kind === "legacy") return [s.name, address, await legacyHealth(address)];
          return [s.name, address, await checkHealth(address)];
        }),
      );
      process.stdout.write(`${renderTable(["SERVICE", "ADDRESS", "HEALTH"], rows)}\n`);
      const supervised = readSupervision(process.env.MESHWORK_HOME ?? join(root, ".meshwork"));
      if (supervised) {
        process.stdout.write(
          `\nsupervised by meshctl up (pid ${supervised.pid}):\n${supervisionTable(supervised.children)}\n`,
        );
      }
      const caches = (
        await Promise.all(
          services.map((s) =>
            s.kind === "gateway"
              ? // The gateway's JWKS cache, on its admin listener.
                fetchCacheRows(s.name, `127.0.0.1:${s.adminPort ?? 9901}`, "/stats/prometheus")
              : fetchCacheRows(s.name, `127.0.0.1:${s.port}`),
          ),
        )
      ).flat();
      if (caches.length > 0) {
        process.stdout.write(
          `\ncaches:\n${renderTable(["SERVICE", "CACHE", "L1 HIT", "L2 HIT", "LOADS", "AVG LOAD", "EVICTIONS", "SHARED"], caches)}\n`,
        );
      }
      const registry = await registryRows(natsUrl, registryBucket, natsAdmin);
      if (registry.ok) {
        process.stdout.write(
          `\nregistry ${registryBucket} at ${natsUrl}:\n${renderTable(
            ["SERVICE", "INSTANCE", "ADDRESS", "VERSION", "UP", "HEALTH"],
            registry.rows,
          )}\n`,
        );
      } else {
        process.stdout.write(`\nregistry ${registryBucket} at ${natsUrl}: ${registry.detail}\n`);
      }
      return rows.every((r) => r[2] === "SERVING" || r[2] === "LIVE") ? 0 : 1;
    }
    case "strangler":
      return stranglerCommand(positionals, {
        admin: values["gateway-admin"] ?? process.env.GATEWAY_ADMIN_URL ?? "http://127.0.0.1:9901",
        gateway: values.gateway ?? "http://127.0.0.1:8080",
        nats: { natsUrl, natsCredentials: natsAdmin, namespace },
        legacyDatabaseUrl: findLegacyDatabaseUrl(home),
        limit: values.limit ? Number(values.limit) : undefined,
        out: process.stdout,
        err: process.stderr,
      });
    case "demo":
      if (positionals[0] === "strangler") {
        return stranglerDemo({
          gateway: values.gateway ?? "http://127.0.0.1:8080",
          admin: values["gateway-admin"] ?? process.env.GATEWAY_ADMIN_URL ?? "http://127.0.0.1:9901",
          home,
          nats: { natsUrl, natsCredentials: natsAdmin, namespace },
          legacyDatabaseUrl: findLegacyDatabaseUrl(home),
          out: process.stdout,
          err: process.stderr,
        });
      }
      return demo({ gateway: values.gateway ?? "http://127.0.0.1:8080", home, out: process.stdout });
    case "admin": {
      if (positionals[0] !== "create") {
        process.stderr.write("usage: meshctl admin create --email EMAIL [--password-file FILE]\n");
        return 2;
      }
      return adminCreateCommand({
        gateway: values.gateway ?? "http://127.0.0.1:8080",
        home,
        email: values.email,
        displayName: values["display-name"],
        passwordFile: values["password-file"],
        secretFile: values["secret-file"],
        out: process.stdout,
        err: process.stderr,
      });
    }
    case "envoy": {
      const file = join(root, ENVOY_CONFIG_PATH);
      const rendered = renderEnvoyYaml({
        files: meshworkFiles,
        services,
        rateLimits: values["rate-limits"] ?? process.env.RATE_LIMITS,
        corsOrigins: (process.env.CORS_ORIGINS ?? "")
          .split(",")
          .map((o) => o.trim())
          .filter(Boolean),
      });
      const current = existsSync(file) ? readFileSync(file, "utf8") : "";
      // The transcoder's descriptor set, beside the config.
      const pbFile = join(root, ENVOY_DESCRIPTORS_PATH);
      const pb = Buffer.from(renderDescriptorSet(meshworkFiles));
      const pbCurrent = existsSync(pbFile) && readFileSync(pbFile).equals(pb);
      if (values.check) {
        process.stdout.write(
          current === rendered ? `${ENVOY_CONFIG_PATH} is current\n` : `${ENVOY_CONFIG_PATH} is stale\n`,
        );
        process.stdout.write(`${ENVOY_DESCRIPTORS_PATH} is ${pbCurrent ? "current" : "stale"}\n`);
        return current === rendered && pbCurrent ? 0 : 1;
      }
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, rendered);
      writeFileSync(pbFile, pb);
      process.stdout.write(`wrote ${ENVOY_CONFIG_PATH} and ${ENVOY_DESCRIPTORS_PATH}\n`);
      return 0;
    }
    case "k8s": {
      let stale = 0;
      // Every process, the legacy monolith (strangler fig) among them.
      const deployed = services;
      for (const [path, content] of renderK8s(deployed)) {
        const file = join(root, path);
        const current = existsSync(file) ? readFileSync(file, "utf8") : "";
        if (values.check) {
          if (current !== content) stale++;
          process.stdout.write(`${path} is ${current === content ? "current" : "stale"}\n`);
          continue;
        }
        if (current === content) continue;
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, content);
        process.stdout.write(`wrote ${path}\n`);
      }
      if (values.check) return stale === 0 ? 0 : 1;
      if (values.secrets) {
        writeK8sSecrets(join(root, K8S_DEV_SECRETS_DIR), deployed);
        process.stdout.write(`wrote the Secrets' env files in ${K8S_DEV_SECRETS_DIR}\n`);
      }
      return 0;
    }
    case "secrets": {
      const file = join(root, COMPOSE_NATS_CONFIG_PATH);
      const rendered = renderComposeNatsConfig(composeServices);
      const current = existsSync(file) ? readFileSync(file, "utf8") : "";
      if (values.check) {
        const fresh = current === rendered;
        process.stdout.write(`${COMPOSE_NATS_CONFIG_PATH} is ${fresh ? "current" : "stale"}\n`);
        return fresh ? 0 : 1;
      }
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, rendered);
      const envFile = join(process.env.MESHWORK_HOME ?? join(root, ".meshwork"), "compose.env");
      writeComposeSecrets(envFile, composeServices);
      process.stdout.write(
        `wrote ${COMPOSE_NATS_CONFIG_PATH} and ${envFile}\nthen: docker compose --env-file ${envFile} up --build\n`,
      );
      return 0;
    }
    case "release": {
      if (positionals[0] !== "check") {
        process.stderr.write("usage: meshctl release check [--against GIT-REF]\n");
        return 2;
      }
      let against = values.against;
      if (!against) {
        const base = spawnSync("git", ["merge-base", "HEAD", "main"], { cwd: root, encoding: "utf8" });
        if (base.status !== 0) {
          process.stderr.write(
            "meshctl release check: no merge base with main here: give --against GIT-REF\n",
          );
          return 2;
        }
        against = base.stdout.trim();
      }
      return releaseCheck({ root, against, say: (l) => process.stdout.write(`${l}\n`) });
    }
    case "keys": {
      if (positionals[0] !== "rotate") {
        process.stderr.write(`unknown keys command\n\n${usage}`);
        return 2;
      }
      return keysRotate({
        gateway: values.gateway ?? "http://127.0.0.1:8080",
        token: values.token ?? process.env.MESHWORK_TOKEN,
        out: process.stdout,
        err: process.stderr,
      });
    }
    case "events": {
      const [area, action, ...args] = positionals;
      const o = {
        natsUrl,
        natsCredentials: natsAdmin,
        namespace,
        service: values.service,
        consumer: values.consumer,
        out: process.stdout,
      };
      if (area === "dlq" && action === "list") return dlqList(o);
      if (area === "dlq" && action === "replay") {
        const seqs = args.map(Number);
        if (seqs.some((n) => !Number.isInteger(n) || n <= 0)) {
          process.stderr.write("replay takes dead-letter sequence numbers (see `meshctl events dlq list`)\n");
          return 2;
        }
        return dlqReplay({ ...o, seqs, all: values.all ?? false });
      }
      process.stderr.write(`unknown events command\n\n${usage}`);
      return 2;
    }
    default:
      process.stderr.write(`unknown command "${command}"\n\n${usage}`);
      return 2;
  }
}

async function traceCommands(
  command: "traces" | "trace" | "logs",
  values: {
    receiver?: string;
    limit?: string;
    service?: string;
    last?: boolean;
    order?: string;
    trace?: string;
    width?: string;
  },
  positionals: string[],
): Promise<number> {
  const o = {
    receiver: values.receiver,
    home: process.env.MESHWORK_HOME ?? join(root, ".meshwork"),
    out: process.stdout,
    err: process.stderr,
  };
  const count = (v: string | undefined, name: string) => {
    const n = v === undefined ? undefined : Number(v);
    if (n !== undefined && (!Number.isInteger(n) || n < 1))
      throw new Error(`--${name} takes a positive integer`);
    return n;
  };
  try {
    if (command === "traces")
      return await tracesCommand({ ...o, limit: count(values.limit, "limit"), service: values.service });
    if (command === "logs") {
      if (!values.trace) throw new Error("logs takes --trace TRACE-ID");
      return await logsCommand({ ...o, traceId: values.trace });
    }
    const [id] = positionals;
    if ([id !== undefined, values.last === true, values.order !== undefined].filter(Boolean).length !== 1) {
      throw new Error("trace takes one of: a trace id, --last, --order ORDER-ID");
    }
    return await traceCommand({
      ...o,
      traceId: id,
      last: values.last,
      order: values.order,
      width: count(values.width, "width"),
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));
