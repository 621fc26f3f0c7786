import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { type ProcessControl, type RunningConsole, startConsole } from "@meshwork/console";
import type { NatsCredentials } from "@meshwork/events";
import { adminNatsCredentials } from "./nats-auth.js";
import type { Supervisor } from "./supervisor.js";
import { receiverUrl } from "./traces.js";
import type { SupervisionReport } from "./up.js";

/** Default address of the console: loopback only, since it calls the mesh with the page's tokens. */
export const DEFAULT_CONSOLE_ADDRESS = "127.0.0.1:9400";

/** `host:port` into its parts; throws a sentence naming the flag for anything else. */
export function parseConsoleAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(":");
  const host = i > 0 ? address.slice(0, i).replace(/^\[|\]$/g, "") : "127.0.0.1";
  const port = Number(i >= 0 ? address.slice(i + 1) : address);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--console takes host:port or off, not "${address}"`);
  }
  return { host, port };
}

/** The processes `up` runs, as the console's stop/restart sees them. */
export function supervisorControl(
  supervisor: Supervisor,
  addresses: () => Map<string, { address?: string; admin?: string }>,
): ProcessControl {
  return {
    list: () => {
      const a = addresses();
      return supervisor.status().map((c) => ({
        name: c.name,
        state: c.state,
        restarts: c.restarts,
        address: a.get(c.name)?.address,
        admin: a.get(c.name)?.admin,
      }));
    },
    stop: (name) => void supervisor.stop(name),
    restart: (name) => supervisor.restart(name),
  };
}

export interface MeshConsoleOptions {
  address: string;
  gatewayUrl: string;
  receiverUrl: string;
  natsUrl: string;
  natsCredentials?: NatsCredentials;
  registryBucket: string;
  namespace: string;
  processes?: ProcessControl;
}

/**
 * The console package's `dist` (its front end and API comments). meshctl's bundle holds the
 * console's code (kept outside, its modules and their second copies of the libs loaded from
 * node_modules cost `up` ~1 s of CPU before it started anything), so the console cannot find
 * its files from its own module: they are where the package resolves.
 */
export function consoleAssetsDir(): string {
  return dirname(createRequire(import.meta.url).resolve("@meshwork/console"));
}

/** Starts the console on `address` (`host:port`). */
export function startMeshConsole(o: MeshConsoleOptions): Promise<RunningConsole> {
  const { host, port } = parseConsoleAddress(o.address);
  return startConsole({ host, port, assetsDir: consoleAssetsDir(), ...o });
}

/**
 * `meshctl console`: a console against a mesh that is already running (the addresses `up`
 * noted in its home, else the defaults). Stop and restart are for the console `up` runs itself.
 */
export async function consoleCommand(o: {
  home: string;
  address: string;
  gateway?: string;
  receiver?: string;
  natsUrl: string;
  registryBucket: string;
  namespace: string;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}): Promise<number> {
  let gatewayUrl = o.gateway;
  if (!gatewayUrl) {
    try {
      const report = JSON.parse(readFileSync(join(o.home, "supervisor.json"), "utf8")) as SupervisionReport;
      const address = report.children.find((c) => c.name === "gateway")?.address;
      if (address) gatewayUrl = `http://${address}`;
    } catch {
      // no `up` running from this home: the default address
    }
  }
  let running: RunningConsole;
  try {
    running = await startMeshConsole({
      address: o.address,
      gatewayUrl: gatewayUrl ?? "http://127.0.0.1:8080",
      receiverUrl: receiverUrl({ receiver: o.receiver, home: o.home }),
      natsUrl: o.natsUrl,
      natsCredentials: adminNatsCredentials(join(o.home, "nats-auth")),
      registryBucket: o.registryBucket,
      namespace: o.namespace,
    });
  } catch (err) {
    o.err.write(
      `the console cannot listen on ${o.address}: ${(err as Error).message} (--listen host:port)\n`,
    );
    return 1;
  }
  o.out.write(`console: ${running.url} (Ctrl-C stops it)\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  await running.close();
  return 0;
}
