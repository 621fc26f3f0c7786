import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUILD_COMMIT_VAR } from "@meshwork/runtime";
import { bootstrapSecretFile } from "./admin.js";
import { sourceCommit } from "./build-commit.js";
import { CoalescedFile } from "./coalesced-file.js";
import { startMeshConsole, supervisorControl } from "./console.js";
import {
  meshIdentityKeys,
  meshKeyEncryptionKeyFile,
  meshLegacySyncKeyFile,
  meshLegacyTokenSecret,
} from "./identity-keys.js";
import { clearLeftovers } from "./leftovers.js";
import { type LocalTelemetry, startLocalTelemetry } from "./local-telemetry.js";
import { childLogLevel, type LogLevel } from "./log-level.js";
import { ensureNats, type NatsHandle } from "./nats.js";
import { adminNatsCredentials, meshNatsUsers } from "./nats-auth.js";
import { type ServiceEntry, serviceEntry } from "./node-args.js";
import { type EmbeddedPostgresHandle, localPoolEnv, startEmbeddedPostgres } from "./postgres.js";
import { provisionServiceDatabase, type ServiceDatabase } from "./provision.js";
import type { ServiceManifest } from "./services.js";
import { legacyDatabaseUrlFile } from "./strangler.js";
import {
  type ChildStatus,
  DEFAULT_RESTART_POLICY,
  type RestartPolicy,
  Supervisor,
  type SupervisorEvent,
} from "./supervisor.js";
import { renderTable } from "./table.js";
import { colours, plannedAddress, probeChild, type Running, spawnChild } from "./up-children.js";

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
  /**
   * How often the health of a starting process is asked (default 200 ms). A process that says
   * it listens or that its health changed is asked at once as well.
   */
  pollEveryMs?: number;
  /**
   * How often a starting service (kind `service`) is asked between its hints (default 1 s): the
   * runtime logs `health changed` when it turns SERVING, and `up` asks at once then. Asked every
   * 200 ms like the monolith and the gateway, each service took 20-50 health checks between
   * listening and SERVING in a loaded start, each a new HTTP connection for meshctl and for the
   * service while it was still loading.
   */
  servicePollEveryMs?: number;
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
  const say = (msg: string) => options.out.write(`meshctl | ${msg}\n`);
  mkdirSync(options.home, { recursive: true });
  try {
    await clearLeftovers(options.home, options.services, say);
  } catch (err) {
    say(`failed: ${(err as Error).message}`);
    return 1;
  }
  return new MeshRun(options, say).run();
}

/** What the services and the gateway are started with: NATS users, identity keys, the databases' admin URL. */
interface MeshInfrastructure {
  natsEnv(name: string): Record<string, string>;
  identity: ReturnType<typeof meshIdentityKeys>;
  keyEncryptionKeyFile: string;
  /** One session-token secret for the monolith (it signs) and users (ExchangeLegacyToken). */
  legacyTokenSecret: string;
  /** Seals (legacy) and opens (users) the password hashes, emails and names on LEGACY_USERS. */
  legacySyncKeyFile: string;
  adminUrl: string | undefined;
  creds: Record<string, string>;
}

/**
 * One run of `up`, a step per method: infrastructure (NATS, trace receiver, Postgres), the
 * services, the gateway once users and the monolith are up, the console and the table, then the
 * wait for a signal (or for every process to be left down), and the clean-up.
 */
class MeshRun {
  private readonly running: Running[] = [];
  private readonly supervisor: Supervisor;
  private readonly reportFile: CoalescedFile;
  /** The last health answer of each process that was starting. */
  private readonly health = new Map<string, string>();
  /** When each starting process was last asked for its health (ms since the epoch). */
  private readonly probedAt = new Map<string, number>();
  /** Set once `up` is on its way out: waits end, no further process is started. */
  private stopping = false;
  private polling = false;
  /** A process said it listens or changed health while a poll ran: poll again once it ends. */
  private pollAgain = false;
  /** Waits in {@link until}, woken by any change of a process (its state, its address). */
  private readonly waiters = new Set<() => void>();
  private readonly tty: boolean;
  private readonly width: number;
  private readonly signalled: Promise<NodeJS.Signals>;
  private onSignal: ((s: NodeJS.Signals) => void) | undefined;
  // Resolves when the last process still up is left down: nothing runs any more, so `up` ends.
  private readonly everyProcessDown: Promise<void>;
  private nats: NatsHandle | undefined;
  private poller: NodeJS.Timeout | undefined;
  private telemetry: LocalTelemetry | undefined;
  private embedded: EmbeddedPostgresHandle | undefined;
  private meshConsole: Awaited<ReturnType<typeof startMeshConsole>> | undefined;
  private buildEnv: Record<string, string> = {};
  private readonly entries = new Map<string, ServiceEntry>();

  constructor(
    private readonly options: UpOptions,
    private readonly say: (msg: string) => void,
  ) {
    const { out } = options;
    this.tty = "isTTY" in out && Boolean((out as { isTTY?: boolean }).isTTY);
    this.width = Math.max(
      ...options.services.map((s) => instanceName(s.name, (options.replicas?.[s.name] ?? 1) - 1).length),
    );
    const supervisor = new Supervisor(options.restartPolicy ?? DEFAULT_RESTART_POLICY);
    this.supervisor = supervisor;
    this.reportFile = new CoalescedFile(supervisionFile(options.home), {
      text: () => this.reportText(),
      urgent: () => this.reportPids(),
    });
    supervisor.onChange(() => {
      this.reportFile.changed();
      this.wake();
    });
    supervisor.onEvent((e) => {
      say(describeEvent(e));
      if (e.type === "back" || e.type === "gave-up")
        out.write(`\n${supervisionTable(supervisor.status())}\n\n`);
    });
    this.everyProcessDown = new Promise<void>((resolve) =>
      supervisor.onEvent((e) => {
        if (e.type !== "gave-up") return;
        const states = supervisor.status().map((c) => c.state);
        if (states.every((s) => s === "given-up" || s === "stopped")) resolve();
      }),
    );
    this.signalled = new Promise<NodeJS.Signals>((resolve) => {
      this.onSignal = (s) => resolve(s);
      process.once("SIGINT", this.onSignal);
      process.once("SIGTERM", this.onSignal);
    });
  }

  async run(): Promise<number> {
    try {
      // What every process reports as the commit it runs (meshwork_build_info, its registry
      // record): the tree it starts from, unless the caller says otherwise. Asked, and each
      // service's entry (bundle or not) checked, while NATS and Postgres start.
      const commitAsked = process.env[BUILD_COMMIT_VAR] || sourceCommit(this.options.root);
      const entriesChecked = this.checkEntries();
      entriesChecked.catch(() => {}); // awaited below; a failure there ends `up`
      const infra = await this.startInfrastructure();
      const commit = await commitAsked;
      this.buildEnv = {
        ...(commit ? { [BUILD_COMMIT_VAR]: commit } : {}),
        // Where the bundles' launchers keep V8 code caches (see node-args.ts, serviceEntry).
        MESHWORK_CODE_CACHE_DIR: process.env.MESHWORK_CODE_CACHE_DIR ?? join(this.options.home, "code-cache"),
      };
      await entriesChecked;
      this.poller = setInterval(() => void this.poll(), this.options.pollEveryMs ?? 200);
      await this.startServices(infra);
      const ready = this.startGateways(infra);
      ready.catch(() => {}); // when a signal came first; otherwise the race below has its error
      const first = await Promise.race([
        ready.then(() => ({ kind: "ready" as const })),
        this.signalled.then((signal) => ({ kind: "signal" as const, signal })),
      ]);
      if (first.kind === "signal") {
        this.stopping = true;
        this.say(`${first.signal}: stopping`);
        await this.stopAll("SIGTERM");
        return 0;
      }
      await this.showMesh();
      return await this.untilEnd();
    } catch (err) {
      this.stopping = true;
      this.say(`failed: ${err instanceof Error ? err.message : String(err)}`);
      await this.stopAll("SIGTERM");
      return 1;
    } finally {
      await this.cleanUp();
    }
  }

  private stopAll(signal: NodeJS.Signals) {
    return this.supervisor.stopAll(signal, 15_000);
  }

  /**
   * {@link supervisionFile} for `meshctl status` and the leftovers logic; urgent (written on the
   * next tick) when a process id changed, else coalesced during the start (see {@link CoalescedFile}).
   */
  private reportText() {
    const byName = new Map(this.running.map((r) => [r.name, r]));
    const body: SupervisionReport = {
      pid: process.pid,
      children: this.supervisor.status().map((c) => ({ ...c, address: byName.get(c.name)?.address })),
    };
    return `${JSON.stringify(body, null, 2)}\n`;
  }

  /** The report's urgent part: its process ids (asked at every change, so no serialising). */
  private reportPids() {
    return this.supervisor
      .status()
      .map((c) => c.pid ?? "-")
      .join(",");
  }

  /** NATS (with a user per process), the identity keys, the trace receiver and Postgres. */
  private async startInfrastructure(): Promise<MeshInfrastructure> {
    const { options, say } = this;
    // The legacy monolith has a NATS user too: it relays its change data capture (LEGACY stream)
    // and applies the new services' events back into its tables (the reverse sync).
    const serviceNames = options.services
      .filter((m) => m.kind === "service" || m.kind === "legacy")
      .map((m) => ({ name: m.name, consumes: m.consumes }));
    const natsUsers = meshNatsUsers(join(options.home, "nats-auth"), serviceNames, {
      bucket: options.registryBucket,
      namespace: options.namespace ?? "",
    });
    const nats = await ensureNats({
      url: options.natsUrl,
      home: options.home,
      autoPort: options.autoPorts,
      users: natsUsers,
    });
    this.nats = nats;
    const natsEnv = (name: string): Record<string, string> => {
      const c = nats.credentials(name);
      return c ? { NATS_USER: c.user, NATS_PASSWORD: c.password } : {};
    };
    const identity = meshIdentityKeys(
      join(options.home, "identity-keys.json"),
      options.services.map((m) => m.name),
      options.services.filter((m) => m.kind === "gateway").map((m) => m.name),
    );
    const keyEncryptionKeyFile = meshKeyEncryptionKeyFile(options.home);
    const legacyTokenSecret = meshLegacyTokenSecret(options.home);
    const legacySyncKeyFile = meshLegacySyncKeyFile(options.home);
    say(`NATS at ${nats.url}: ${nats.detail}`);
    if (options.otlp && options.otlp !== "off") {
      this.telemetry = await startLocalTelemetry({ home: options.home, address: options.otlp });
      say(`traces: OTLP receiver at ${this.telemetry.url} (meshctl traces, meshctl trace --last)`);
    }
    const adminUrl = await this.startPostgres();
    return {
      natsEnv,
      identity,
      keyEncryptionKeyFile,
      legacyTokenSecret,
      legacySyncKeyFile,
      adminUrl,
      creds: loadCredentials(options.home),
    };
  }

  /** The databases' admin URL: the one given, or an embedded server's when a service needs one. */
  private async startPostgres(): Promise<string | undefined> {
    const { options } = this;
    if (options.databaseUrl || !options.services.some((m) => m.database)) return options.databaseUrl;
    const embedded = await startEmbeddedPostgres({
      home: options.home,
      autoPort: options.autoPorts,
      port: options.postgresPort,
      say: this.say,
    });
    this.embedded = embedded;
    this.say(`Postgres at ${embedded.address}: ${embedded.detail}`);
    return embedded.adminUrl;
  }

  /** Which file each process runs (its bundle while current, see {@link serviceEntry}). */
  private async checkEntries(): Promise<void> {
    const checked = await Promise.all(
      this.options.services.map(async (m) => [m.name, await serviceEntry(m.dir, m.main)] as const),
    );
    for (const [name, entry] of checked) this.entries.set(name, entry);
  }

  /** Adds one process to the supervisor (which starts it). */
  private launch(
    manifest: ServiceManifest,
    env: Record<string, string>,
    database: string,
    i: number,
    name = manifest.name,
  ): Running {
    const entry = this.entries.get(manifest.name);
    if (!entry) throw new Error(`no entry point checked for ${manifest.name}`);
    if (!existsSync(entry.file)) throw new Error(`${entry.file} does not exist: run \`npm run build\` first`);
    const r: Running = { manifest, name, env, database };
    this.running.push(r);
    const label = name.padEnd(this.width);
    const prefix = this.tty ? `\x1b[${colours[i % colours.length]}m${label}\x1b[0m | ` : `${label} | `;
    const { root, logLevel, out } = this.options;
    this.supervisor.add(name, () =>
      spawnChild(r, entry, prefix, {
        root,
        logLevel,
        out,
        buildEnv: this.buildEnv,
        telemetry: this.telemetry,
        onReadyHint: () => {
          this.wake();
          void this.poll(true);
        },
      }),
    );
    return r;
  }

  /**
   * Every process that is starting (at first, or after a restart) is `running` once it answers.
   * Runs every 200 ms (a service, which says when its health changes, every
   * `servicePollEveryMs`), and at once when a process says it listens or changed health (`hinted`).
   */
  private async poll(hinted = false): Promise<void> {
    if (this.polling) {
      if (hinted) this.pollAgain = true;
      return;
    }
    this.polling = true;
    const serviceEvery = this.options.servicePollEveryMs ?? 1_000;
    let hintedPass = hinted;
    try {
      do {
        this.pollAgain = false;
        const now = Date.now();
        await Promise.all(
          this.running.map(async (r) => {
            if (this.supervisor.state(r.name) !== "starting") return;
            const last = this.probedAt.get(r.name) ?? Number.NEGATIVE_INFINITY;
            if (!hintedPass && r.manifest.kind === "service" && now - last < serviceEvery) return;
            this.probedAt.set(r.name, now);
            const state = await probeChild(r);
            this.health.set(r.name, state);
            if (state === "SERVING" || state === "LIVE") this.supervisor.running(r.name);
          }),
        );
        hintedPass = true; // polled again because a process hinted meanwhile
      } while (this.pollAgain && !this.stopping);
    } finally {
      this.polling = false;
    }
  }

  /** Ends the current waits of {@link until}: something changed. */
  private wake(): void {
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** Until something changes (see {@link wake}), or `ms` at most. */
  private changeOrAfter(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(done);
        resolve();
      }, ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.add(done);
    });
  }

  private settled(names: string[]): boolean {
    return names.every((n) => {
      const s = this.supervisor.state(n);
      return s === "running" || s === "given-up";
    });
  }

  /** Whether the process `name` has said where it listens. */
  private listening(name: string): boolean {
    return this.running.some((r) => r.name === name && r.address !== undefined);
  }

  /** None of `names` is running: each was left down after crashing in a loop. */
  private allDown(names: string[]): boolean {
    return names.every((n) => this.supervisor.state(n) === "given-up");
  }

  /** What a process that is not up yet is waiting for, in words. */
  private waitingFor(r: Running): string {
    const state = this.supervisor.state(r.name);
    if (state === "backing-off") return `${r.name} (crashed; restarting)`;
    if (!r.address && !r.admin) return `${r.name} (no "listening" line from it yet)`;
    return `${r.name} (${this.health.get(r.name) ?? "no health answer yet"})`;
  }

  /**
   * Until every process named is running or left down; says every `progressEveryMs` which are
   * not, and gives up (rejects) once `up` is stopping.
   */
  private async until(names: string[], done = (ns: string[]) => this.settled(ns)): Promise<void> {
    const progressEvery = this.options.progressEveryMs ?? 30_000;
    const since = Date.now();
    let next = since + progressEvery;
    while (!done(names)) {
      if (this.stopping) throw new Error("stopping");
      if (Date.now() >= next) {
        next += progressEvery;
        const waiting = this.running.filter((r) => names.includes(r.name) && !done([r.name]));
        this.say(
          `still waiting after ${Math.round((Date.now() - since) / 1000)} s for: ${waiting.map((r) => this.waitingFor(r)).join(", ")}`,
        );
      }
      await this.changeOrAfter(100);
    }
  }

  /** The services and the monolith (it owns a database like them), each instance of each. */
  private async startServices(infra: MeshInfrastructure): Promise<void> {
    const { options } = this;
    const services = options.services.filter((m) => m.kind === "service" || m.kind === "legacy");
    const provisioned = this.provisionDatabases(services, infra);
    for (const [i, manifest] of services.entries()) {
      const env: Record<string, string> = {
        NATS_URL: this.nats?.url ?? "",
        DISCOVERY_BUCKET: options.registryBucket,
        PORT: options.autoPorts ? "0" : String(manifest.port),
        LOG_LEVEL: childLogLevel(options.logLevel),
        // No admin is built in: while none exists, users writes a one-time secret here (0600)
        // for `meshctl admin create` (and the demo).
        USERS_BOOTSTRAP_SECRET_OUT: bootstrapSecretFile(options.home),
        // Users' signing keys are sealed at rest with this mesh's own key encryption key.
        USERS_KEY_ENCRYPTION_KEY_FILE: infra.keyEncryptionKeyFile,
        ...localPoolEnv(),
        ...infra.natsEnv(manifest.name),
        ...infra.identity.env(manifest.name, "service"),
        ...(manifest.kind === "legacy" || manifest.name === "users"
          ? { LEGACY_TOKEN_SECRET: infra.legacyTokenSecret, LEGACY_SYNC_KEY_FILE: infra.legacySyncKeyFile }
          : {}),
      };
      const database = await this.useDatabase(manifest, env, provisioned.get(manifest.name));
      // Further instances: the same database, each on a free port (announced in the registry).
      const count = options.replicas?.[manifest.name] ?? 1;
      for (let k = 0; k < count; k++) {
        const instanceEnv = k === 0 ? env : { ...env, PORT: "0" };
        this.launch(manifest, instanceEnv, database, i, instanceName(manifest.name, k));
      }
    }
  }

  /**
   * Every service's own database and role, provisioned at once (a connection each), so each
   * service starts as soon as its own is ready: one after the other, they delayed the last
   * service's start by the sum. Each promise is awaited in `useDatabase`, in order.
   */
  private provisionDatabases(
    services: ServiceManifest[],
    infra: MeshInfrastructure,
  ): Map<string, Promise<ServiceDatabase>> {
    const { options } = this;
    const { adminUrl, creds } = infra;
    const provisioned = new Map<string, Promise<ServiceDatabase>>();
    if (!adminUrl) return provisioned;
    for (const m of services.filter((s) => s.database)) {
      const key = `${options.dbPrefix}_${m.name}`;
      const p = provisionServiceDatabase(adminUrl, m.name, {
        prefix: options.dbPrefix,
        password: creds[key],
      }).then((db) => {
        creds[key] = decodeURIComponent(new URL(db.url).password);
        saveCredentials(options.home, creds);
        return db;
      });
      p.catch(() => {}); // awaited in useDatabase, in order; a failure there ends `up`
      provisioned.set(m.name, p);
    }
    return provisioned;
  }

  /** The service's own database (DATABASE_URL in `env`) once provisioned; its description for the table. */
  private async useDatabase(
    manifest: ServiceManifest,
    env: Record<string, string>,
    provisioning: Promise<ServiceDatabase> | undefined,
  ): Promise<string> {
    if (!provisioning) return "-";
    const db = await provisioning;
    env.DATABASE_URL = db.url;
    // `meshctl strangler backfill` reads the monolith's catalogue from here.
    if (manifest.kind === "legacy")
      writeFileSync(legacyDatabaseUrlFile(this.options.home), `${db.url}\n`, { mode: 0o600 });
    return `postgres ${db.database} (role ${db.role})`;
  }

  /**
   * Waits for users and the monolith, starts the gateway in front of them, and waits for every
   * process to be SERVING (or left down after crashing in a loop) and the gateway's admin /ready.
   */
  private async startGateways(infra: MeshInfrastructure): Promise<void> {
    // The gateway needs the addresses of users (its JWKS, fetched when a token first needs it)
    // and of the monolith only; it follows the registry for the rest (each service announces
    // itself when SERVING), and is LIVE once its own listeners are. With fixed ports (`npm
    // start`) those two addresses are known before the processes listen, so it starts with the
    // services: waiting for the monolith to listen kept the gateway, loaded alone afterwards, on
    // the start's critical path (legacy listening at 12.9 s, gateway LIVE at 15.8 s, load 10).
    // With `--ports auto` it starts once users and the monolith said where they listen.
    const serviceNames = this.running.map((r) => r.name);
    const servicesCount = this.options.services.filter(
      (m) => m.kind === "service" || m.kind === "legacy",
    ).length;
    if (this.options.autoPorts)
      await this.until(
        this.running
          .filter((r) => r.manifest.name === "users" || r.manifest.kind === "legacy")
          .map((r) => r.name),
        (names) => names.every((n) => this.listening(n) || this.supervisor.state(n) === "given-up"),
      );
    this.failWhenEveryServiceDown(serviceNames);
    const gateways = this.options.services.filter((m) => m.kind === "gateway");
    for (const [j, manifest] of gateways.entries())
      this.launch(manifest, this.gatewayEnv(manifest, infra), "-", servicesCount + j);
    await this.until(this.running.map((r) => r.name));
    this.failWhenEveryServiceDown(serviceNames);
    if (this.allDown(this.running.map((r) => r.name)))
      throw new Error("every process exited and was left down: see their output above");
  }

  private failWhenEveryServiceDown(serviceNames: string[]): void {
    if (this.running.length > 0 && this.allDown(serviceNames))
      throw new Error(
        `every process exited and was left down after ${(this.options.restartPolicy ?? DEFAULT_RESTART_POLICY).maxCrashes} crashes: see their output above`,
      );
  }

  private gatewayEnv(manifest: ServiceManifest, infra: MeshInfrastructure): Record<string, string> {
    const { options } = this;
    // The first instance's: where it listens, or with fixed ports where it will (its own port, on
    // the host it is given).
    const addressOf = (r: Running | undefined) =>
      r?.address ?? (r && !options.autoPorts ? plannedAddress(r, r.manifest.port) : undefined);
    const users = addressOf(this.running.find((r) => r.manifest.name === "users"));
    const legacy = addressOf(this.running.find((r) => r.manifest.kind === "legacy"));
    return {
      PORT: options.autoPorts ? "0" : String(manifest.port),
      ADMIN_PORT: options.autoPorts ? "0" : String(manifest.adminPort ?? 9901),
      LOG_LEVEL: childLogLevel(options.logLevel),
      // Endpoints from the registry the services announced themselves in.
      NATS_URL: this.nats?.url ?? "",
      DISCOVERY_BUCKET: options.registryBucket,
      ...(users ? { JWKS_URL: `http://${users}/.well-known/jwks.json` } : {}),
      // The REST API under /api/ starts on the monolith (meshctl strangler moves it).
      ...(legacy ? { STRANGLER_LEGACY_URL: `http://${legacy}` } : {}),
      ...infra.natsEnv("gateway"),
      ...infra.identity.env(manifest.name, "gateway"),
    };
  }

  /** The console (when asked for) and the table of every process, once the mesh is up. */
  private async showMesh(): Promise<void> {
    const { options, running, nats, embedded } = this;
    for (const r of running) if (r.manifest.kind === "gateway") r.database = `admin ${r.admin}`;
    if (options.console && options.console !== "off")
      this.meshConsole = await this.startConsole(options.console);
    this.reportFile.settle(); // current when "the mesh is up" is read, and every change from now on
    const healthOf = (r: Running) =>
      this.supervisor.state(r.name) === "given-up" ? "GIVEN-UP" : (this.health.get(r.name) ?? "?");
    options.out.write(
      `\n${renderTable(
        ["SERVICE", "ADDRESS", "HEALTH", "DATABASE"],
        [
          ...running.map((r) => [r.name, r.address ?? "-", healthOf(r), r.database]),
          ...(embedded ? [["postgres", embedded.address, "UP", embedded.detail]] : []),
          ["nats", nats?.address ?? "-", "UP", nats?.detail ?? ""],
        ],
      )}\n\n${this.meshConsole ? `meshctl | console: ${this.meshConsole.url}\n` : ""}meshctl | the mesh is up; Ctrl-C stops it\n\n`,
    );
  }

  private startConsole(address: string) {
    const { options, running } = this;
    const gateway = running.find((r) => r.manifest.kind === "gateway");
    return startMeshConsole({
      address,
      gatewayUrl: `http://${gateway?.address ?? "127.0.0.1:8080"}`,
      receiverUrl: this.telemetry?.url ?? "http://127.0.0.1:4318",
      natsUrl: this.nats?.url ?? "",
      natsCredentials: adminNatsCredentials(join(options.home, "nats-auth")),
      registryBucket: options.registryBucket,
      namespace: options.namespace ?? "",
      processes: supervisorControl(this.supervisor, () => new Map(running.map((r) => [r.manifest.name, r]))),
    }).catch((err: Error) => {
      this.say(
        `console: cannot listen on ${address} (${err.message}); the mesh runs without it (--console host:port)`,
      );
      return undefined;
    });
  }

  /** Until a signal, or until every process is left down; stops them all. The exit code. */
  private async untilEnd(): Promise<number> {
    const end = await Promise.race([
      this.signalled.then(() => "signal" as const),
      this.everyProcessDown.then(() => "down" as const),
    ]);
    this.stopping = true;
    if (end === "down") {
      this.say("every process has exited and was left down after crashing in a loop: stopping (exit 1)");
      await this.stopAll("SIGTERM");
      return 1;
    }
    this.say("stopping");
    const exits = await this.stopAll("SIGTERM");
    const bad = this.running.filter((r) => exits.get(r.name) !== 0);
    this.say(
      bad.length === 0 ? "stopped" : `stopped; ${bad.map((r) => r.name).join(", ")} did not exit cleanly`,
    );
    return bad.length === 0 ? 0 : 1;
  }

  private async cleanUp(): Promise<void> {
    clearInterval(this.poller);
    await this.meshConsole?.close();
    this.reportFile.cancel();
    rmSync(supervisionFile(this.options.home), { force: true });
    await this.telemetry?.close();
    // Last, once every service has stopped using it.
    if (this.embedded) {
      await this.embedded.stop();
      this.say("postgres stopped");
    }
    await this.nats?.stop();
    if (this.onSignal) {
      process.off("SIGINT", this.onSignal);
      process.off("SIGTERM", this.onSignal);
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
