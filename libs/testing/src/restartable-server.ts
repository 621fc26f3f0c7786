import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@meshwork/local-postgres";
import { guardGroup, releaseGroup } from "./process-guard.js";
import { waitFor } from "./wait.js";

/** A private server process on a free loopback port, for tests that stop and restart it. */
export interface RestartableServer {
  url: string;
  port: number;
  /** Stops the server (SIGTERM; its directory is kept). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same directory. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
}

/**
 * Starts `bin args(port, dir)` in a temporary directory and waits until `ready(port)`; `stop`
 * and `start` keep the port and the directory, so a test can take the server away and bring it back.
 */
export async function startRestartableServer(options: {
  name: string;
  bin: string;
  args: (port: number, dir: string) => string[];
  ready: (port: number) => Promise<boolean>;
  url: (port: number) => string;
}): Promise<RestartableServer> {
  const dir = mkdtempSync(join(tmpdir(), `mw-${options.name}-`));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    // Its own process group, killed should this process end without stopping it.
    child = spawn(options.bin, options.args(port, dir), { stdio: "ignore", detached: true });
    if (child.pid) guardGroup(child.pid);
    await waitFor(() => options.ready(port), { what: `${options.name} on port ${port}` });
  };
  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGTERM");
    });
    if (c.pid) releaseGroup(c.pid);
  };
  await start();
  return {
    url: options.url(port),
    port,
    start,
    stop,
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
