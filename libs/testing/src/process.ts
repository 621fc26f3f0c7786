import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { guardGroup, killGroup, releaseGroup } from "./process-guard.js";
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
  /**
   * Sends `signal` and waits for the exit (SIGKILL to the whole group after `killAfterMs`, 30 s
   * by default), then kills whatever of its process group is left.
   */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<number | string>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /**
   * `stop(signal)` signals the whole process group (like Ctrl-C) rather than the child alone.
   * Either way the child leads a process group of its own, which dies with the test process.
   */
  detached?: boolean;
}

/**
 * Starts `command args` and collects its output. Always `stop()` it in a `finally`/`afterAll`.
 *
 * The child leads a process group of its own, and that group is killed when this process exits,
 * however it exits (see `guardGroup`): a test that fails before its teardown, or a vitest worker
 * that is killed, leaves no process behind (a failed end-to-end run once left orders, payments and
 * notifications running, loading Postgres through later CI runs).
 */
export function startProcess(command: string, args: string[], options: StartOptions = {}): ManagedProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const pgid = child.pid;
  if (pgid) guardGroup(pgid);
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on("line", (l) => lines.push(l));
  }
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1));
  });
  // Each line is parsed once: a wait polls every 50 ms, and re-parsing a chatty process's whole
  // output each time cost the loaded CI machine CPU in proportion to its length.
  const parsedLines: Array<Record<string, unknown>> = [];
  let parsedUpTo = 0;
  const parsed = () => {
    for (; parsedUpTo < lines.length; parsedUpTo++) {
      const l = lines[parsedUpTo] as string;
      if (!l.startsWith("{")) continue;
      try {
        parsedLines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        // not a JSON log line
      }
    }
    return parsedLines;
  };
  // A wait that times out says what the process printed last and whether it is still running:
  // the failure of a loaded CI run cannot be re-run to look.
  const explained = <T>(wait: Promise<T>): Promise<T> =>
    wait.catch((err: Error) => {
      const state =
        child.exitCode !== null || child.signalCode !== null
          ? `exited ${child.exitCode ?? child.signalCode}`
          : "still running";
      throw new Error(
        `${err.message} (pid ${child.pid}, ${state}; its last lines:)\n${lines.slice(-40).join("\n")}`,
      );
    });
  return {
    child,
    lines,
    logs: () => parsed().slice(),
    waitForLog: (match, timeoutMs = 60_000) =>
      explained(waitFor(() => parsed().find(match), { timeoutMs, what: `a log line from ${command}` })),
    waitForLine: (match, timeoutMs = 60_000) =>
      explained(waitFor(() => lines.find(match), { timeoutMs, what: `an output line from ${command}` })),
    exited,
    async stop(signal = "SIGTERM", killAfterMs = 30_000) {
      if (child.exitCode === null && child.signalCode === null) {
        if (options.detached && pgid) killGroup(pgid, signal);
        else child.kill(signal);
      }
      const killer = setTimeout(() => pgid && killGroup(pgid), killAfterMs);
      const result = await exited.finally(() => clearTimeout(killer));
      // What it started and left (its own children, in its group) goes with it.
      if (pgid) {
        killGroup(pgid);
        releaseGroup(pgid);
      }
      return result;
    },
  };
}
