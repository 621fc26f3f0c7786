import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { BUILD_COMMIT_VAR } from "@meshwork/runtime";
import { bootstrapSecretFile } from "./admin.js";
import { sourceCommit } from "./build-commit.js";
import { startMeshConsole, supervisorControl } from "./console.js";
import { checkHealth, gatewayReady, legacyHealth } from "./health.js";
import { meshIdentityKeys, meshKeyEncryptionKeyFile, meshLegacyTokenSecret } from "./identity-keys.js";
import { clearLeftovers } from "./leftovers.js";
import { type LocalTelemetry, startLocalTelemetry } from "./local-telemetry.js";
import { childLogLevel, type LogLevel, shownAt } from "./log-level.js";
import { ensureNats, type NatsHandle } from "./nats.js";
import { adminNatsCredentials, meshNatsUsers } from "./nats-auth.js";
import { meshNodeArgs, type ServiceEntry, serviceEntry } from "./node-args.js";
import { type EmbeddedPostgresHandle, localPoolEnv, startEmbeddedPostgres } from "./postgres.js";
import { provisionServiceDatabase } from "./provision.js";
import type { ServiceManifest } from "./services.js";
import { legacyDatabaseUrlFile } from "./strangler.js";
import {
  type ChildHandle,
  type ChildStatus,
  DEFAULT_RESTART_POLICY,
  type RestartPolicy,
  Supervisor,
  type SupervisorEvent,
} from "./supervisor.js";
import { renderTable } from "./table.js";

export interface UpOptions {
  root: string;
  services: ServiceManifest[];
  /** Where data and generated credentials live (default `<root>/.meshwork`). */
  home: string;
  /** Bind every service to a free port instead of its default one. */
  autoPorts: boolean;
  /**
   * An admin URL of a Postgres server: each service gets its own database and role there.
   * Without one, `up` runs an embedded Postgres server (`<home>/postgres`) and does the same there.
   */
  databaseUrl: string | undefined;
  /** Port of the embedded Postgres server when it is free (default 5432; a free one with `autoPorts`). */
  postgresPort?: number;
  /** Prefix of the per-service database and role names (`<prefix>_<service>`). */
  dbPrefix: string;
  /** Where NATS is expected (started from the PATH when nothing answers there). */
  natsUrl: string;
  /** The discovery registry's KV bucket: every process announces itself there (the gateway reads it). */
  registryBucket: string;
  /** `EVENTS_NAMESPACE` of the mesh (the services read it from the environment); default empty. */
  namespace?: string;
  /**
   * Level of the services' log lines `up` shows (and keeps for `meshctl logs`). The processes
   * themselves log at `info` at least: `up` reads their `listening` line.
   */
  logLevel: LogLevel;
  /** `host:port` of the embedded trace receiver every process exports spans to, or `off`. */
  otlp?: string;
  /** `host:port` of the web console (`off` for none; default none). */
  console?: string;
  /** Where the mesh's own messages and the services' prefixed logs go. */
  out: NodeJS.WritableStream;
  /** When a crashed process is started again, and when it is left down (default {@link DEFAULT_RESTART_POLICY}). */
  restartPolicy?: RestartPolicy;
  /**
   * Instances per service (`{ orders: 3 }`; 1 when absent): a scale-out rehearsal on one
   * machine. The first instance keeps the service's name and port; the others are
   * `<service>#2`, `#3`, ... on free ports. All share the service's database, and each announces
   * itself in the registry, so the gateway and the callers balance over them.
   */
  replicas?: Readonly<Record<string, number>>;
  /** While processes are still starting, say which and why every this many ms (default 30 s). */
  progressEveryMs?: number;
}

/** The supervised name of one instance: `orders` for the first, `orders#2` for the second, ... */
export function instanceName(service: string, index: number): string {
  return index === 0 ? service : `${service}#${index + 1}`;
}

/**
 * Parses `--replicas orders=3,inventory=2` against the services of the repository: a known
 * service (not the gateway), a whole number of instances from 1 to 16.
 */
export function parseReplicas(spec: string, services: readonly ServiceManifest[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of spec
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^([a-z0-9-]+)=(\d+)$/.exec(part);
    if (!m) throw new Error(`--replicas: "${part}" is not SERVICE=COUNT (e.g. orders=3)`);
    const [, name, count] = m as unknown as [string, string, string];
    const manifest = services.find((s) => s.name === name);
    if (!manifest) {
      throw new Error(
        `--replicas: no service "${name}" (services: ${services
          .filter((s) => s.kind === "service")
          .map((s) => s.name)
          .join(", ")})`,
      );
    }
    if (manifest.kind !== "service") throw new Error(`--replicas: ${name} is the edge; it runs once`);
    const n = Number(count);
    if (n < 1 || n > 16) throw new Error(`--replicas: ${name}=${count}: from 1 to 16 instances`);
    out[name] = n;
  }
  return out;
}

interface Running {
  manifest: ServiceManifest;
  /** The supervised name: the service's, or `<service>#<n>` for its further instances. */
  name: string;
  /** The environment of every start; PORT (and ADMIN_PORT) pinned after the first, so a restart comes back at the same address. */
  env: Record<string, string>;
  address?: string;
  /** The gateway's admin listener, from its `listening` line. */
  admin?: string;
  database: string;
}

const colours = [36, 33, 35, 32, 34, 31];

function loadCredentials(home: string): Record<string, string> {
  const file = join(home, "db-credentials.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, string>) : {};
}

function saveCredentials(home: string, creds: Record<string, string>): void {
  const file = join(home, "db-credentials.json");
  writeFileSync(file, `${JSON.stringify(creds, null, 2)}\n`);
  chmodSync(file, 0o600);
}

/** The file `meshctl status` reads the supervisor's view from, while `up` runs. */
export function supervisionFile(home: string): string {
  return join(home, "supervisor.json");
}

/** What `up` writes to {@link supervisionFile}. */
export interface SupervisionReport {
  pid: number;
  children: Array<ChildStatus & { address?: string }>;
}

function describeEvent(e: SupervisorEvent): string {
  switch (e.type) {
    case "crashed":
      return `${e.name} exited with ${e.exit} (crash ${e.crashes}); restarting in ${e.delayMs} ms`;
    case "restarted":
      return `${e.name} restarted (restart ${e.restarts}, pid ${e.pid ?? "?"})`;
    case "back":
      return `${e.name} is back (restart ${e.restarts})`;
    case "gave-up":
      return `${e.name} exited with ${e.exit}: ${e.crashes} crashes within ${Math.round(e.windowMs / 1000)} s; left down (the rest keeps running)`;
  }
}

/**
 * Starts every service as its own process, waits until each reports SERVING, prints the status
 * table, streams each service's log lines with its name in front, and on SIGINT/SIGTERM stops
 * them all (SIGTERM, then SIGKILL after 15 s). Resolves with the exit code for the CLI.
 *
 * The processes are supervised ({@link Supervisor}): one that exits is started again at the same
 * address after a growing pause, and one that keeps crashing is left down and reported, while the
 * rest keeps serving.
 */
export async function up(options: UpOptions): Promise<number> {
  const { out } = options;
  const say = (msg: string) => out.write(`meshctl | ${msg}\n`);
  mkdirSync(options.home, { recursive: true });
  try {
    await clearLeftovers(options.home, options.services, say);
  } catch (err) {
    say(`failed: ${(err as Error).message}`);
    return 1;
  }
  const tty = "isTTY" in out && Boolean((out as { isTTY?: boolean }).isTTY);
  const width = Math.max(
    ...options.services.map((s) => instanceName(s.name, (options.replicas?.[s.name] ?? 1) - 1).length),
  );
  const running: Running[] = [];
  const supervisor = new Supervisor(options.restartPolicy ?? DEFAULT_RESTART_POLICY);
  const report = () => {
    const byName = new Map(running.map((r) => [r.name, r]));
    const body: SupervisionReport = {
      pid: process.pid,
      children: supervisor.status().map((c) => ({ ...c, address: byName.get(c.name)?.address })),
    };
    writeFileSync(supervisionFile(options.home), `${JSON.stringify(body, null, 2)}\n`);
  };
  supervisor.onChange(report);
  supervisor.onEvent((e) => {
    say(describeEvent(e));
    if (e.type === "back" || e.type === "gave-up")
      out.write(`\n${supervisionTable(supervisor.status())}\n\n`);
  });
  const stopAll = (signal: NodeJS.Signals) => supervisor.stopAll(signal, 15_000);
  /** Set once `up` is on its way out: waits end, no further process is started. */
  let stopping = false;
  // Resolves when the last process still up is left down: nothing runs any more, so `up` ends.
  const everyProcessDown = new Promise<void>((resolve) =>
    supervisor.onEvent((e) => {
      if (e.type !== "gave-up") return;
      const states = supervisor.status().map((c) => c.state);
      if (states.every((s) => s === "given-up" || s === "stopped")) resolve();
    }),
  );

  let onSignal: ((s: NodeJS.Signals) => void) | undefined;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (s) => resolve(s);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });

  let nats: NatsHandle | undefined;
  let poller: NodeJS.Timeout | undefined;
  let telemetry: LocalTelemetry | undefined;
  let embedded: EmbeddedPostgresHandle | undefined;
  let meshConsole: Awaited<ReturnType<typeof startMeshConsole>> | undefined;
  try {
    // The legacy monolith has a NATS user too: it relays its change data capture (LEGACY stream)
    // and applies the new services' events back into its tables (the reverse sync).
    const serviceNames = options.services
      .filter((m) => m.kind === "service" || m.kind === "legacy")
      .map((m) => ({ name: m.name, consumes: m.consumes }));
    const natsUsers = meshNatsUsers(join(options.home, "nats-auth"), serviceNames, {
      bucket: options.registryBucket,
      namespace: options.namespace ?? "",
    });
    nats = await ensureNats({
      url: options.natsUrl,
      home: options.home,
      autoPort: options.autoPorts,
      users: natsUsers,
    });
    const natsEnv = (name: string): Record<string, string> => {
      const c = nats?.credentials(name);
      return c ? { NATS_USER: c.user, NATS_PASSWORD: c.password } : {};
    };
    const identity = meshIdentityKeys(
      join(options.home, "identity-keys.json"),
      options.services.map((m) => m.name),
      options.services.filter((m) => m.kind === "gateway").map((m) => m.name),
    );
    const keyEncryptionKeyFile = meshKeyEncryptionKeyFile(options.home);
    const legacyTokenSecret = meshLegacyTokenSecret(options.home);
    say(`NATS at ${nats.url}: ${nats.detail}`);
    if (options.otlp && options.otlp !== "off") {
      telemetry = await startLocalTelemetry({ home: options.home, address: options.otlp });
      say(`traces: OTLP receiver at ${telemetry.url} (meshctl traces, meshctl trace --last)`);
    }
    let adminUrl = options.databaseUrl;
    if (!adminUrl && options.services.some((m) => m.database)) {
      embedded = await startEmbeddedPostgres({
        home: options.home,
        autoPort: options.autoPorts,
        port: options.postgresPort,
        say,
      });
      adminUrl = embedded.adminUrl;
      say(`Postgres at ${embedded.address}: ${embedded.detail}`);
    }
    const creds = loadCredentials(options.home);
    // The legacy monolith starts with the services (it owns a database like them).
    const services = options.services.filter((m) => m.kind === "service" || m.kind === "legacy");
    const gateways = options.services.filter((m) => m.kind === "gateway");
    const launch = (
      manifest: ServiceManifest,
      env: Record<string, string>,
      database: string,
      i: number,
      name = manifest.name,
    ) => {
      const entry = serviceEntry(manifest.dir, manifest.main);
      if (!existsSync(entry.file))
        throw new Error(`${entry.file} does not exist: run \`npm run build\` first`);
      const r: Running = { manifest, name, env, database };
      running.push(r);
      const label = name.padEnd(width);
      const prefix = tty ? `\x1b[${colours[i % colours.length]}m${label}\x1b[0m | ` : `${label} | `;
      supervisor.add(name, () => spawnService(r, entry, prefix));
      return r;
    };
    // What every process reports as the commit it runs (meshwork_build_info, its registry record):
    // the tree it starts from, unless the caller says otherwise.
    const commit = process.env[BUILD_COMMIT_VAR] || sourceCommit(options.root);
    const buildEnv = commit ? { [BUILD_COMMIT_VAR]: commit } : {};
    const spawnService = (r: Running, entry: ServiceEntry, prefix: string): ChildHandle => {
      const child = spawn(process.execPath, [...meshNodeArgs(undefined, entry.bundled), entry.file], {
        cwd: options.root,
        env: {
          ...process.env,
          ...buildEnv,
          ...telemetry?.env,
          ...r.env,
          DATABASE_URL: r.env.DATABASE_URL ?? "",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let listening = false;
      for (const stream of [child.stdout, child.stderr]) {
        createInterface({ input: stream! }).on("line", (line) => {
          if (shownAt(line, options.logLevel)) {
            out.write(`${prefix}${line}\n`);
            telemetry?.logLine(r.manifest.name, line);
          }
          if (!listening && line.includes('"msg":"listening"')) {
            try {
              const parsed = JSON.parse(line) as { host: string; port: number; adminUrl?: string };
              listening = true;
              r.address = `${parsed.host}:${parsed.port}`;
              r.env.PORT = String(parsed.port); // a restart comes back where callers know it
              if (parsed.adminUrl) {
                r.admin = parsed.adminUrl.replace(/^http:\/\//, "");
                r.env.ADMIN_PORT = r.admin.split(":").at(-1) ?? r.env.ADMIN_PORT ?? "0";
              }
            } catch {
              // not a log line of ours
            }
          }
        });
      }
      return {
        pid: child.pid,
        exited: new Promise((resolve) => child.once("exit", (code, sig) => resolve(code ?? sig ?? -1))),
        kill: (signal) => {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        },
      };
    };
    const probe = (r: Running) =>
      r.manifest.kind === "gateway"
        ? r.admin
          ? gatewayReady(r.admin)
          : Promise.resolve("STARTING")
        : r.address
          ? r.manifest.kind === "legacy"
            ? legacyHealth(r.address)
            : checkHealth(r.address)
          : Promise.resolve("STARTING");
    // Every process that is starting (at first, or after a restart) is `running` once it answers.
    const health = new Map<string, string>();
    let polling = false;
    const poll = async () => {
      if (polling) return;
      polling = true;
      try {
        await Promise.all(
          running.map(async (r) => {
            if (supervisor.state(r.name) !== "starting") return;
            const state = await probe(r);
            health.set(r.name, state);
            if (state === "SERVING" || state === "LIVE") supervisor.running(r.name);
          }),
        );
      } finally {
        polling = false;
      }
    };
    poller = setInterval(() => void poll(), 200);
    const settled = (names: string[]) =>
      names.every((n) => {
        const s = supervisor.state(n);
        return s === "running" || s === "given-up";
      });
    // What a process that is not up yet is waiting for, in words.
    const waitingFor = (r: Running) => {
      const state = supervisor.state(r.name);
      if (state === "backing-off") return `${r.name} (crashed; restarting)`;
      if (!r.address && !r.admin) return `${r.name} (no "listening" line from it yet)`;
      return `${r.name} (${health.get(r.name) ?? "no health answer yet"})`;
    };
    const progressEvery = options.progressEveryMs ?? 30_000;
    // Until every process named is running or left down; says every `progressEvery` which are
    // not, and gives up (rejects) once `up` is stopping.
    const until = async (names: string[]) => {
      const since = Date.now();
      let next = since + progressEvery;
      while (!settled(names)) {
        if (stopping) throw new Error("stopping");
        if (Date.now() >= next) {
          next += progressEvery;
          const waiting = running.filter((r) => names.includes(r.name) && !settled([r.name]));
          say(
            `still waiting after ${Math.round((Date.now() - since) / 1000)} s for: ${waiting.map(waitingFor).join(", ")}`,
          );
        }
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    // None of `names` is running: each was left down after crashing in a loop.
    const allDown = (names: string[]) => names.every((n) => supervisor.state(n) === "given-up");

    // Every database is provisioned at once (a connection each), and each service starts as soon
    // as its own is ready: one after the other, they delayed the last service's start by the sum.
    const provisioned = new Map(
      services
        .filter((m) => m.database && adminUrl)
        .map((m) => {
          const password = creds[`${options.dbPrefix}_${m.name}`];
          const p = provisionServiceDatabase(adminUrl as string, m.name, {
            prefix: options.dbPrefix,
            password,
          });
          p.catch(() => {}); // awaited below, in order; a failure there ends `up`
          return [m.name, p] as const;
        }),
    );
    for (const [i, manifest] of services.entries()) {
      const env: Record<string, string> = {
        NATS_URL: nats.url,
        DISCOVERY_BUCKET: options.registryBucket,
        PORT: options.autoPorts ? "0" : String(manifest.port),
        LOG_LEVEL: childLogLevel(options.logLevel),
        // No admin is built in: while none exists, users writes a one-time secret here (0600)
        // for `meshctl admin create` (and the demo).
        USERS_BOOTSTRAP_SECRET_OUT: bootstrapSecretFile(options.home),
        // Users' signing keys are sealed at rest with this mesh's own key encryption key.
        USERS_KEY_ENCRYPTION_KEY_FILE: keyEncryptionKeyFile,
        ...localPoolEnv(),
        ...natsEnv(manifest.name),
        ...identity.env(manifest.name, "service"),
        // One session-token secret for the monolith (it signs) and users (ExchangeLegacyToken).
        ...(manifest.kind === "legacy" || manifest.name === "users"
          ? { LEGACY_TOKEN_SECRET: legacyTokenSecret }
          : {}),
      };
      let database = "-";
      const provisioning = provisioned.get(manifest.name);
      if (provisioning) {
        const key = `${options.dbPrefix}_${manifest.name}`;
        const db = await provisioning;
        creds[key] = decodeURIComponent(new URL(db.url).password);
        saveCredentials(options.home, creds);
        env.DATABASE_URL = db.url;
        database = `postgres ${db.database} (role ${db.role})`;
        // `meshctl strangler backfill` reads the monolith's catalogue from here.
        if (manifest.kind === "legacy")
          writeFileSync(legacyDatabaseUrlFile(options.home), `${db.url}\n`, { mode: 0o600 });
      }
      // Further instances: the same database, each on a free port (announced in the registry).
      const count = options.replicas?.[manifest.name] ?? 1;
      for (let k = 0; k < count; k++) {
        const instanceEnv = k === 0 ? env : { ...env, PORT: "0" };
        launch(manifest, instanceEnv, database, i, instanceName(manifest.name, k));
      }
    }

    // Wait for every service to be SERVING (or left down after crashing in a loop), then start
    // the gateway in front of them and wait for its admin /ready.
    const ready = (async () => {
      // The gateway needs the addresses of users (its JWKS) and of the monolith only: it starts
      // once those are up, while the other services still start (it follows the registry, where
      // each announces itself when SERVING). Starting it after all of them made it the last
      // one to load on a machine whose start-up is CPU-bound.
      const serviceNames = running.map((r) => r.name);
      await until(
        running.filter((r) => r.manifest.name === "users" || r.manifest.kind === "legacy").map((r) => r.name),
      );
      const everyServiceDown = () => running.length > 0 && allDown(serviceNames);
      if (everyServiceDown())
        throw new Error(
          `every process exited and was left down after ${(options.restartPolicy ?? DEFAULT_RESTART_POLICY).maxCrashes} crashes: see their output above`,
        );
      for (const [j, manifest] of gateways.entries()) {
        const users = running.find((r) => r.manifest.name === "users");
        const legacy = running.find((r) => r.manifest.kind === "legacy" && r.address);
        launch(
          manifest,
          {
            PORT: options.autoPorts ? "0" : String(manifest.port),
            ADMIN_PORT: options.autoPorts ? "0" : String(manifest.adminPort ?? 9901),
            LOG_LEVEL: childLogLevel(options.logLevel),
            // Endpoints from the registry the services announced themselves in.
            NATS_URL: nats.url,
            DISCOVERY_BUCKET: options.registryBucket,
            ...(users ? { JWKS_URL: `http://${users.address}/.well-known/jwks.json` } : {}),
            // The REST API under /api/ starts on the monolith (meshctl strangler moves it).
            ...(legacy ? { STRANGLER_LEGACY_URL: `http://${legacy.address}` } : {}),
            ...natsEnv("gateway"),
            ...identity.env(manifest.name, "gateway"),
          },
          "-",
          services.length + j,
        );
      }
      await until(running.map((r) => r.name));
      if (everyServiceDown())
        throw new Error(
          `every process exited and was left down after ${(options.restartPolicy ?? DEFAULT_RESTART_POLICY).maxCrashes} crashes: see their output above`,
        );
      if (allDown(running.map((r) => r.name)))
        throw new Error("every process exited and was left down: see their output above");
    })();
    ready.catch(() => {}); // when a signal came first; otherwise the race below has its error
    const first = await Promise.race([
      ready.then(() => ({ kind: "ready" as const })),
      signalled.then((signal) => ({ kind: "signal" as const, signal })),
    ]);
    if (first.kind === "signal") {
      stopping = true;
      say(`${first.signal}: stopping`);
      await stopAll("SIGTERM");
      return 0;
    }
    for (const r of running) if (r.manifest.kind === "gateway") r.database = `admin ${r.admin}`;
    if (options.console && options.console !== "off") {
      const gateway = running.find((r) => r.manifest.kind === "gateway");
      meshConsole = await startMeshConsole({
        address: options.console,
        gatewayUrl: `http://${gateway?.address ?? "127.0.0.1:8080"}`,
        receiverUrl: telemetry?.url ?? "http://127.0.0.1:4318",
        natsUrl: nats.url,
        natsCredentials: adminNatsCredentials(join(options.home, "nats-auth")),
        registryBucket: options.registryBucket,
        namespace: options.namespace ?? "",
        processes: supervisorControl(supervisor, () => new Map(running.map((r) => [r.manifest.name, r]))),
      }).catch((err: Error) => {
        say(
          `console: cannot listen on ${options.console} (${err.message}); the mesh runs without it (--console host:port)`,
        );
        return undefined;
      });
    }
    const healthOf = (r: Running) =>
      supervisor.state(r.name) === "given-up" ? "GIVEN-UP" : (health.get(r.name) ?? "?");
    out.write(
      `\n${renderTable(
        ["SERVICE", "ADDRESS", "HEALTH", "DATABASE"],
        [
          ...running.map((r) => [r.name, r.address ?? "-", healthOf(r), r.database]),
          ...(embedded ? [["postgres", embedded.address, "UP", embedded.detail]] : []),
          ["nats", nats.address, "UP", nats.detail],
        ],
      )}\n\n${meshConsole ? `meshctl | console: ${meshConsole.url}\n` : ""}meshctl | the mesh is up; Ctrl-C stops it\n\n`,
    );

    const end = await Promise.race([
      signalled.then(() => "signal" as const),
      everyProcessDown.then(() => "down" as const),
    ]);
    stopping = true;
    if (end === "down") {
      say("every process has exited and was left down after crashing in a loop: stopping (exit 1)");
      await stopAll("SIGTERM");
      return 1;
    }
    say("stopping");
    const exits = await stopAll("SIGTERM");
    const bad = running.filter((r) => exits.get(r.name) !== 0);
    say(bad.length === 0 ? "stopped" : `stopped; ${bad.map((r) => r.name).join(", ")} did not exit cleanly`);
    return bad.length === 0 ? 0 : 1;
  } catch (err) {
    stopping = true;
    say(`failed: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll("SIGTERM");
    return 1;
  } finally {
    clearInterval(poller);
    await meshConsole?.close();
    rmSync(supervisionFile(options.home), { force: true });
    await telemetry?.close();
    // Last, once every service has stopped using it.
    if (embedded) {
      await embedded.stop();
      say("postgres stopped");
    }
    await nats?.stop();
    if (onSignal) {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  }
}

/** The supervisor's view as a table: state, restarts and last exit per process. */
export function supervisionTable(children: readonly ChildStatus[]): string {
  return renderTable(
    ["SERVICE", "STATE", "RESTARTS", "LAST EXIT"],
    children.map((c) => [
      c.name,
      c.state,
      String(c.restarts),
      c.lastExit === undefined ? "-" : String(c.lastExit),
    ]),
  );
}
