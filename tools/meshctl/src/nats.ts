import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import type { NatsCredentials } from "@meshwork/events";
import { type NatsUser, renderNatsConfig } from "./nats-auth.js";

/** The NATS the mesh uses, and who runs it. */
export interface NatsHandle {
  url: string;
  address: string;
  origin: "external" | "started";
  detail: string;
  /**
   * A process's own user on a server meshctl started (which refuses clients without one);
   * undefined on an external server (its users are the operator's: `NATS_USER`/`NATS_PASSWORD`).
   */
  credentials(user: string): NatsCredentials | undefined;
  /** Stops the server if meshctl started it. */
  stop(): Promise<void>;
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1_000 });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const addr = srv.address();
  await new Promise((r) => srv.close(r));
  return typeof addr === "object" && addr ? addr.port : 0;
}

function findOnPath(bin: string): string | undefined {
  try {
    return execFileSync("sh", ["-c", `command -v ${bin}`], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Thrown when there is no NATS to use and none to start. */
export class NatsUnavailableError extends Error {
  override readonly name = "NatsUnavailableError";
}

/**
 * Finds NATS for the mesh: `url` when something answers there; otherwise a `nats-server` from
 * the PATH, started with JetStream and its store under `home/nats`, on the URL's
 * port (or a free one with `autoPort`); otherwise it says how to get one.
 *
 * A server meshctl starts requires authentication: its configuration (`home/nats-auth/nats.conf`,
 * owner-only) has `users`, each with its own password and permissions.
 */
export async function ensureNats(options: {
  url: string;
  home: string;
  autoPort: boolean;
  /** The users of a server meshctl starts (see `meshNatsUsers`). */
  users: readonly NatsUser[];
}): Promise<NatsHandle> {
  const u = new URL(options.url);
  const host = u.hostname || "127.0.0.1";
  const port = Number(u.port || 4222);
  if (await canConnect(host, port)) {
    return {
      url: options.url,
      address: `${host}:${port}`,
      origin: "external",
      detail: "external (NATS_URL)",
      credentials: () => undefined,
      stop: async () => {},
    };
  }
  const bin = findOnPath("nats-server");
  if (!bin) {
    throw new NatsUnavailableError(
      `NATS is not reachable at ${options.url} and no nats-server was found on the PATH. ` +
        "Install it (Debian/Ubuntu: apt-get install nats-server; or a release from nats.io), " +
        "or point NATS_URL at a running server with JetStream enabled.",
    );
  }
  const usePort = options.autoPort ? await freePort() : port;
  const store = join(options.home, "nats");
  mkdirSync(store, { recursive: true });
  const auth = join(options.home, "nats-auth");
  mkdirSync(auth, { recursive: true, mode: 0o700 });
  const configFile = join(auth, "nats.conf");
  writeFileSync(
    configFile,
    renderNatsConfig({ host: "127.0.0.1", port: usePort, storeDir: store, users: [...options.users] }),
    { mode: 0o600 },
  );
  chmodSync(configFile, 0o600);
  const child: ChildProcess = spawn(bin, ["-c", configFile], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  for (let i = 0; i < 100 && !(await canConnect("127.0.0.1", usePort)); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!(await canConnect("127.0.0.1", usePort))) {
    child.kill("SIGKILL");
    throw new NatsUnavailableError(`${bin} did not start on port ${usePort}`);
  }
  return {
    url: `nats://127.0.0.1:${usePort}`,
    address: `127.0.0.1:${usePort}`,
    origin: "started",
    detail: `started by meshctl (${bin}, store ${store}, a user per process)`,
    credentials: (user) => {
      const found = options.users.find((u) => u.user === user);
      return found && { user: found.user, password: found.password };
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
