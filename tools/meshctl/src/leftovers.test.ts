import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { clearLeftovers, MeshAlreadyUpError } from "./leftovers.js";
import type { ServiceManifest } from "./services.js";
import { supervisionFile } from "./up.js";

const idle = "setInterval(() => {}, 1000)";
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** A long-running process whose command line carries `args` (as a service's would carry its entry). */
function idleProcess(...args: string[]): ChildProcess {
  const child = spawn(process.execPath, ["-e", idle, ...args], { stdio: "ignore" });
  children.push(child);
  return child;
}

const exited = (c: ChildProcess) =>
  new Promise<void>((resolve) =>
    c.exitCode !== null || c.signalCode !== null ? resolve() : c.once("exit", () => resolve()),
  );

describe("what a killed meshctl up left behind", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-leftovers-"));
  afterAll(() => rmSync(home, { recursive: true, force: true }));
  const dir = join(home, "apps", "users");
  mkdirSync(dir, { recursive: true });
  const users: ServiceManifest = {
    name: "users",
    port: 1,
    dir,
    main: "dist/main.js",
    database: true,
    kind: "service",
  };
  const report = (pid: number, children: Array<{ name: string; pid: number }>) =>
    writeFileSync(
      supervisionFile(home),
      JSON.stringify({ pid, children: children.map((c) => ({ ...c, state: "running", restarts: 0 })) }),
    );

  it("stops the services it ran, and leaves alone a process that merely got one of their pids", async () => {
    const deadUp = idleProcess();
    deadUp.kill("SIGKILL");
    await exited(deadUp);
    const service = idleProcess(join(dir, "dist/main.js"));
    const stranger = idleProcess("something-else.js");
    report(deadUp.pid as number, [
      { name: "users", pid: service.pid as number },
      { name: "users", pid: stranger.pid as number },
    ]);
    const said: string[] = [];
    await clearLeftovers(home, [users], (l) => said.push(l));
    await exited(service);
    expect(service.signalCode).toBe("SIGTERM");
    expect(stranger.exitCode === null && stranger.signalCode === null).toBe(true);
    expect(said).toEqual([
      `an earlier meshctl up (pid ${deadUp.pid}) was killed and left users (pid ${service.pid}) running: stopping them`,
    ]);
  });

  it("stops a service it ran from its bundle's code-cache launcher (what up starts when the build wrote one)", async () => {
    const deadUp = idleProcess();
    deadUp.kill("SIGKILL");
    await exited(deadUp);
    const service = idleProcess(join(dir, "dist/main.bundle.start.cjs"));
    report(deadUp.pid as number, [{ name: "users", pid: service.pid as number }]);
    await clearLeftovers(home, [users], () => {});
    await exited(service);
    expect(service.signalCode).toBe("SIGTERM");
  });

  it("refuses while that meshctl up is still running with the same home", async () => {
    // (spawn returns once the child has exec'd: its command line is already its own)
    const liveUp = idleProcess("tools/meshctl/dist/main.js", "up");
    report(liveUp.pid as number, []);
    await expect(clearLeftovers(home, [users], () => {})).rejects.toBeInstanceOf(MeshAlreadyUpError);
  });
});
