import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@meshwork/local-postgres";
import { waitFor } from "./wait.js";

/**
 * A private redis-server, for tests that stop and restart it (the machine's Redis on
 * 127.0.0.1:6379 is shared: never stop that one).
 */
export interface TestRedisServer {
  url: string;
  port: number;
  /** Stops the server (SIGTERM). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
}

async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => {
      s.destroy();
      resolve(String(d).startsWith("+PONG"));
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Starts `redis-server` (from `MESHWORK_REDIS_SERVER` or /usr/bin/redis-server) on a free loopback
 * port, without persistence, in a temporary directory.
 */
export async function startRedisServer(): Promise<TestRedisServer> {
  const bin = process.env.MESHWORK_REDIS_SERVER ?? "/usr/bin/redis-server";
  const dir = mkdtempSync(join(tmpdir(), "mw-redis-"));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(
      bin,
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
      { stdio: "ignore" },
    );
    await waitFor(() => answersPing(port), { what: `redis-server on port ${port}` });
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGTERM");
    });
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    stop,
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
