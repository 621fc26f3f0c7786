import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DEMO_ADMIN } from "./demo.js";
import { checkHealth, gatewayReady } from "./health.js";
import { type LocalTelemetry, startLocalTelemetry } from "./local-telemetry.js";
import { ensureNats, type NatsHandle } from "./nats.js";
import { provisionServiceDatabase } from "./provision.js";
import type { ServiceManifest } from "./services.js";
import { renderTable } from "./table.js";

export interface UpOptions {
  root: string;
  services: ServiceManifest[];
  /** Where data and generated credentials live (default `<root>/.meshwork`). */
  home: string;
  /** Bind every service to a free port instead of its default one. */
  autoPorts: boolean;
  /** An admin URL of a Postgres server: each service gets its own database and role there. */
  databaseUrl: string | undefined;
  /** Prefix of the per-service database and role names (`<prefix>_<service>`). */
  dbPrefix: string;
  /** Where NATS is expected (started from the PATH when nothing answers there). */
  natsUrl: string;
  /** The discovery registry's KV bucket: every process announces itself there (the gateway reads it). */
  registryBucket: string;
  /** Level for the services' logs. */
  logLevel: string;
  /** `host:port` of the embedded trace receiver every process exports spans to, or `off`. */
  otlp?: string;
  /** Where the mesh's own messages and the services' prefixed logs go. */
  out: NodeJS.WritableStream;
}

interface Running {
  manifest: ServiceManifest;
  child: ChildProcess;
  address?: string;
  /** The gateway's admin listener, from its `listening` line. */
  admin?: string;
  database: string;
  exited: Promise<number | string>;
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

/**
 * Starts every service as its own process, waits until each reports SERVING, prints the status
 * table, streams each service's log lines with its name in front, and on SIGINT/SIGTERM stops
 * them all (SIGTERM, then SIGKILL after 15 s). Resolves with the exit code for the CLI.
 */
export async function up(options: UpOptions): Promise<number> {
  const { out } = options;
  const say = (msg: string) => out.write(`meshctl | ${msg}\n`);
  mkdirSync(options.home, { recursive: true });
  const tty = "isTTY" in out && Boolean((out as { isTTY?: boolean }).isTTY);
  const width = Math.max(...options.services.map((s) => s.name.length));
  const running: Running[] = [];
  let stopping = false;

  const stopAll = async (signal: NodeJS.Signals) => {
    stopping = true;
    for (const r of running)
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill(signal);
    const killer = setTimeout(() => {
      for (const r of running) if (r.child.exitCode === null) r.child.kill("SIGKILL");
    }, 15_000);
    const codes = await Promise.all(running.map((r) => r.exited));
    clearTimeout(killer);
    return codes;
  };

  let onSignal: ((s: NodeJS.Signals) => void) | undefined;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (s) => resolve(s);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });

  let nats: NatsHandle | undefined;
  let telemetry: LocalTelemetry | undefined;
  try {
    nats = await ensureNats({ url: options.natsUrl, home: options.home, autoPort: options.autoPorts });
    say(`NATS at ${nats.url}: ${nats.detail}`);
    if (options.otlp && options.otlp !== "off") {
      telemetry = await startLocalTelemetry({ home: options.home, address: options.otlp });
      say(`traces: OTLP receiver at ${telemetry.url} (meshctl traces, meshctl trace --last)`);
    }
    const creds = loadCredentials(options.home);
    const services = options.services.filter((m) => m.kind === "service");
    const gateways = options.services.filter((m) => m.kind === "gateway");
    const launch = (manifest: ServiceManifest, env: Record<string, string>, database: string, i: number) => {
      const entry = join(manifest.dir, manifest.main);
      if (!existsSync(entry)) throw new Error(`${entry} does not exist: run \`npm run build\` first`);
      const child = spawn(process.execPath, ["--enable-source-maps", entry], {
        cwd: options.root,
        env: { ...process.env, ...telemetry?.env, ...env, DATABASE_URL: env.DATABASE_URL ?? "" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const r: Running = {
        manifest,
        child,
        database,
        exited: new Promise((resolve) => child.once("exit", (code, sig) => resolve(code ?? sig ?? -1))),
      };
      running.push(r);
      const label = manifest.name.padEnd(width);
      const prefix = tty ? `\x1b[${colours[i % colours.length]}m${label}\x1b[0m | ` : `${label} | `;
      for (const stream of [child.stdout, child.stderr]) {
        createInterface({ input: stream! }).on("line", (line) => {
          out.write(`${prefix}${line}\n`);
          telemetry?.logLine(manifest.name, line);
          if (!r.address && line.includes('"msg":"listening"')) {
            try {
              const parsed = JSON.parse(line) as { host: string; port: number; adminUrl?: string };
              r.address = `${parsed.host}:${parsed.port}`;
              if (parsed.adminUrl) r.admin = parsed.adminUrl.replace(/^http:\/\//, "");
            } catch {
              // not a log line of ours
            }
          }
        });
      }
      return r;
    };
    for (const [i, manifest] of services.entries()) {
      const env: Record<string, string> = {
        NATS_URL: nats.url,
        DISCOVERY_BUCKET: options.registryBucket,
        PORT: options.autoPorts ? "0" : String(manifest.port),
        LOG_LEVEL: options.logLevel,
        // The admin `meshctl demo` logs in as (add yours: USERS_ADMIN_EMAILS=a@x,b@y).
        USERS_ADMIN_EMAILS: process.env.USERS_ADMIN_EMAILS || DEMO_ADMIN.email,
      };
      let database = "-";
      if (manifest.database) {
        if (options.databaseUrl) {
          const key = `${options.dbPrefix}_${manifest.name}`;
          const db = await provisionServiceDatabase(options.databaseUrl, manifest.name, {
            prefix: options.dbPrefix,
            password: creds[key],
          });
          creds[key] = decodeURIComponent(new URL(db.url).password);
          saveCredentials(options.home, creds);
          env.DATABASE_URL = db.url;
          database = `postgres ${db.database} (role ${db.role})`;
        } else {
          env.DATA_DIR = join(options.home, "data", manifest.name);
          database = `pglite ${env.DATA_DIR}`;
        }
      }
      launch(manifest, env, database, i);
    }

    // Wait for every service to be SERVING, then start the gateway in front of them and wait
    // for its admin /ready; a process that exits first fails the start.
    const ready = (async () => {
      for (;;) {
        const states = await Promise.all(
          running.map((r) => (r.address ? checkHealth(r.address) : "STARTING")),
        );
        if (states.every((s) => s === "SERVING")) break;
        await new Promise((res) => setTimeout(res, 200));
      }
      for (const [j, manifest] of gateways.entries()) {
        const users = running.find((r) => r.manifest.name === "users");
        launch(
          manifest,
          {
            PORT: options.autoPorts ? "0" : String(manifest.port),
            ADMIN_PORT: options.autoPorts ? "0" : String(manifest.adminPort ?? 9901),
            LOG_LEVEL: options.logLevel,
            // Endpoints from the registry the services announced themselves in.
            NATS_URL: nats.url,
            DISCOVERY_BUCKET: options.registryBucket,
            ...(users ? { JWKS_URL: `http://${users.address}/.well-known/jwks.json` } : {}),
          },
          "-",
          services.length + j,
        );
      }
      for (;;) {
        const states = await Promise.all(
          running.map((r) =>
            r.manifest.kind === "gateway"
              ? r.admin
                ? gatewayReady(r.admin)
                : "STARTING"
              : r.address
                ? checkHealth(r.address)
                : "STARTING",
          ),
        );
        if (
          states.every((s) => s === "SERVING" || s === "LIVE") &&
          running.length === options.services.length
        ) {
          for (const r of running) if (r.manifest.kind === "gateway") r.database = `admin ${r.admin}`;
          return states;
        }
        await new Promise((res) => setTimeout(res, 200));
      }
    })();
    const died = Promise.race(running.map((r) => r.exited.then((code) => ({ r, code }))));
    const first = await Promise.race([
      ready.then((states) => ({ kind: "ready" as const, states })),
      died.then((d) => ({ kind: "died" as const, ...d })),
      signalled.then((signal) => ({ kind: "signal" as const, signal })),
    ]);
    if (first.kind === "died") {
      say(`${first.r.manifest.name} exited with ${first.code} before it was ready; stopping`);
      await stopAll("SIGTERM");
      return 1;
    }
    if (first.kind === "signal") {
      say(`${first.signal}: stopping`);
      await stopAll("SIGTERM");
      return 0;
    }
    out.write(
      `\n${renderTable(
        ["SERVICE", "ADDRESS", "HEALTH", "DATABASE"],
        [
          ...running.map((r, i) => [r.manifest.name, r.address ?? "-", first.states[i] ?? "?", r.database]),
          ["nats", nats.address, "UP", nats.detail],
        ],
      )}\n\nmeshctl | the mesh is up; Ctrl-C stops it\n\n`,
    );

    const next = await Promise.race([
      died.then((d) => ({ kind: "died" as const, ...d })),
      signalled.then((signal) => ({ kind: "signal" as const, signal })),
    ]);
    if (next.kind === "died" && !stopping) {
      say(`${next.r.manifest.name} exited with ${next.code}; stopping the mesh`);
      await stopAll("SIGTERM");
      return 1;
    }
    say("stopping");
    const codes = await stopAll("SIGTERM");
    const bad = running.filter((_, i) => codes[i] !== 0);
    say(
      bad.length === 0
        ? "stopped"
        : `stopped; ${bad.map((r) => r.manifest.name).join(", ")} did not exit cleanly`,
    );
    return bad.length === 0 ? 0 : 1;
  } catch (err) {
    say(`failed: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll("SIGTERM");
    return 1;
  } finally {
    await telemetry?.close();
    await nats?.stop();
    if (onSignal) {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  }
}
