import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { guardGroup, killGroup } from "@meshwork/testing";

/** A running `npm start`: its lines, its meshctl process, and how long it took to be up. */
export interface Mesh {
  lines: string[];
  npmPid: number;
  upMs: number;
  /** CPU seconds of every process of the start when it was up (see `cpuSeconds`). */
  cpuS: number;
  /** When meshctl said its first line (the cached build done) and when Postgres was up, ms from the start. */
  meshctlMs: number;
  postgresMs: number;
  exited: Promise<number | string>;
}

/** How to start a mesh and measure it. */
export interface MeshStart {
  command: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** CPU seconds of the process group under the start's pid, read once the mesh is up. */
  cpuSeconds: (pid: number) => Promise<number>;
  timeoutMs?: number;
}

/** The line meshctl prints once every process is up. */
export const MESH_UP_LINE = "meshctl | the mesh is up; Ctrl-C stops it";

/**
 * Starts a mesh (`npm start`, in its own process group: SIGINT to it is Ctrl-C) and resolves once
 * it says it is up, with its CPU then. Rejects, with the group killed, when it exits first, is
 * not up within `timeoutMs`, or its CPU cannot be read: whatever fails, the promise settles.
 */
export function startMeshProcess(start: MeshStart): Promise<Mesh> {
  const began = performance.now();
  const child = spawn(start.command, start.args, {
    cwd: start.cwd,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: start.env,
  });
  // Killed with this process however it ends (a failed bench, Ctrl-C of the bench, SIGKILL).
  if (child.pid) guardGroup(child.pid);
  const lines: string[] = [];
  let meshctlMs: number | undefined;
  let postgresMs: number | undefined;
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const timeoutMs = start.timeoutMs ?? 180_000;
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      clearTimeout(timer);
      // Not left running (a build under npm start can outlast the bench otherwise).
      if (child.pid) killGroup(child.pid);
      reject(err);
    };
    const timer = setTimeout(
      () =>
        fail(new Error(`the mesh was not up within ${timeoutMs / 1000} s:\n${lines.slice(-20).join("\n")}`)),
      timeoutMs,
    );
    void exited.then((code) =>
      fail(new Error(`npm start exited (${code}) before the mesh was up:\n${lines.slice(-20).join("\n")}`)),
    );
    const whenUp = async (pid: number) => {
      const upMs = performance.now() - began;
      const cpuS = await start.cpuSeconds(pid);
      clearTimeout(timer);
      resolve({
        lines,
        npmPid: pid,
        upMs,
        cpuS,
        meshctlMs: meshctlMs ?? Number.NaN,
        postgresMs: postgresMs ?? Number.NaN,
        exited,
      });
    };
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on("line", (line) => {
        lines.push(line);
        if (line.startsWith("meshctl | ")) meshctlMs ??= performance.now() - began;
        if (line.startsWith("meshctl | Postgres at ")) postgresMs ??= performance.now() - began;
        if (line === MESH_UP_LINE && child.pid)
          whenUp(child.pid).catch((err: unknown) =>
            fail(new Error(`the mesh was up, but its CPU could not be read: ${String(err)}`, { cause: err })),
          );
      });
    }
  });
}
