import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { waitFor } from "./wait.js";

/** A child process whose output lines are kept for assertions. */
export interface ManagedProcess {
  child: ChildProcess;
  /** Every stdout and stderr line so far. */
  lines: string[];
  /** stdout lines that parse as JSON objects (pino log lines). */
  logs(): Array<Record<string, unknown>>;
  /** Waits until a JSON log line satisfies `match`, and returns it. */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Waits until a raw output line satisfies `match`. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Start in its own process group, so `signal` can reach the whole tree (like Ctrl-C). */
  detached?: boolean;
}

/** Starts `command args` and collects its output. Always `stop()` it in a `finally`/`afterAll`. */
export function startProcess(command: string, args: string[], options: StartOptions = {}): ManagedProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on("line", (l) => lines.push(l));
  }
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1));
  });
  const parsed = () =>
    lines.flatMap((l) => {
      if (!l.startsWith("{")) return [];
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  return {
    child,
    lines,
    logs: parsed,
    waitForLog: (match, timeoutMs = 60_000) =>
      waitFor(() => parsed().find(match), { timeoutMs, what: `a log line from ${command}` }),
    waitForLine: (match, timeoutMs = 60_000) =>
      waitFor(() => lines.find(match), { timeoutMs, what: `an output line from ${command}` }),
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) {
        if (options.detached && child.pid) process.kill(-child.pid, signal);
        else child.kill(signal);
      }
      return exited;
    },
  };
}
