import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@meshwork/local-postgres";
import { waitFor } from "./wait.js";

/** A private nats-server with JetStream, for tests that stop and restart the broker. */
export interface TestNatsServer {
  url: string;
  port: number;
  /** Stops the server (SIGTERM; its store directory is kept). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same store. */
  start(): Promise<void>;
  /** Stops it and removes its store. */
  remove(): Promise<void>;
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Starts `nats-server -js` (from `MESHWORK_NATS_SERVER` or /usr/sbin/nats-server) on a free
 * loopback port with a temporary store directory.
 */
export async function startNatsServer(): Promise<TestNatsServer> {
  const bin = process.env.MESHWORK_NATS_SERVER ?? "/usr/sbin/nats-server";
  const dir = mkdtempSync(join(tmpdir(), "mw-nats-"));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: "ignore" });
    await waitFor(() => accepts(port), { what: `nats-server on port ${port}` });
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
    url: `nats://127.0.0.1:${port}`,
    port,
    start,
    stop,
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
