import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { checkHealth, gatewayReady, legacyHealth } from "./health.js";
import type { LocalTelemetry } from "./local-telemetry.js";
import { type LogLevel, shownAt } from "./log-level.js";
import { meshNodeArgs, type ServiceEntry, serviceNodeOptions } from "./node-args.js";
import type { ServiceManifest } from "./services.js";
import type { ChildHandle } from "./supervisor.js";

/** One process `up` runs (each instance of a service, the monolith, the gateway). */
export interface Running {
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

/** ANSI colours of the processes' name prefixes on a terminal, in turn. */
export const colours = [36, 33, 35, 32, 34, 31];

/** What every start of every child shares. */
export interface SpawnContext {
  root: string;
  logLevel: LogLevel;
  out: NodeJS.WritableStream;
  /** Set for every process: the commit it reports (`MESHWORK_BUILD_COMMIT`, when known) and `MESHWORK_CODE_CACHE_DIR`. */
  buildEnv: Record<string, string>;
  telemetry: LocalTelemetry | undefined;
  /**
   * Told when a process says it listens or that its health changed: `up` probes it at once
   * rather than at its next poll (a 200 ms poll lost up to 200 ms per step of the start).
   */
  onReadyHint?: () => void;
}

/**
 * Starts one process of `r`: its output lines shown with `prefix` (and kept for `meshctl logs`),
 * its `listening` line read for its address (pinned in `r.env`, so a restart comes back there).
 */
export function spawnChild(r: Running, entry: ServiceEntry, prefix: string, ctx: SpawnContext): ChildHandle {
  // The service's own Node options (the gateway's young generation) as its image runs them.
  const nodeOptions = serviceNodeOptions(r.manifest.nodeOptions);
  const child = spawn(process.execPath, [...meshNodeArgs(nodeOptions, entry.bundled), entry.file], {
    cwd: ctx.root,
    env: {
      ...process.env,
      ...ctx.buildEnv,
      ...ctx.telemetry?.env,
      ...r.env,
      DATABASE_URL: r.env.DATABASE_URL ?? "",
      ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let listening = false;
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream! }).on("line", (line) => {
      if (shownAt(line, ctx.logLevel)) {
        ctx.out.write(`${prefix}${line}\n`);
        ctx.telemetry?.logLine(r.manifest.name, line);
      }
      if (!listening && line.includes('"msg":"listening"')) {
        listening = readListening(r, line);
        if (listening) ctx.onReadyHint?.();
      } else if (line.includes('"msg":"health changed"')) ctx.onReadyHint?.();
    });
  }
  return {
    pid: child.pid,
    exited: new Promise((resolve) => child.once("exit", (code, sig) => resolve(code ?? sig ?? -1))),
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/**
 * Where `r` will listen, before it says so: the `HOST` its environment gives it (its own, else
 * the one it inherits from `up`'s, as {@link spawnChild} builds it), or the runtime's default
 * 127.0.0.1, with `port`. An IPv6 host is bracketed.
 */
export function plannedAddress(r: Running, port: number, env: NodeJS.ProcessEnv = process.env): string {
  return hostPort(r.env.HOST ?? env.HOST ?? "127.0.0.1", port);
}

/** `host:port`, an IPv6 host bracketed (`[::1]:50051`), as a URL's authority wants it. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Takes the address (and the gateway's admin address) from a `listening` line; false when it is not ours. */
function readListening(r: Running, line: string): boolean {
  try {
    const parsed = JSON.parse(line) as { host: string; port: number; adminUrl?: string };
    r.address = hostPort(parsed.host, parsed.port);
    r.env.PORT = String(parsed.port); // a restart comes back where callers know it
    if (parsed.adminUrl) {
      r.admin = parsed.adminUrl.replace(/^http:\/\//, "");
      r.env.ADMIN_PORT = r.admin.split(":").at(-1) ?? r.env.ADMIN_PORT ?? "0";
    }
    return true;
  } catch {
    return false; // not a log line of ours
  }
}

/** The health of one process as `up` waits for it: SERVING (LIVE for the monolith, the gateway's ready), or not yet. */
export function probeChild(r: Running): Promise<string> {
  return r.manifest.kind === "gateway"
    ? r.admin
      ? gatewayReady(r.admin)
      : Promise.resolve("STARTING")
    : r.address
      ? r.manifest.kind === "legacy"
        ? legacyHealth(r.address)
        : checkHealth(r.address)
      : Promise.resolve("STARTING");
}
