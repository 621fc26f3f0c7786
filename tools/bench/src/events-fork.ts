/**
 * The parent's side of the events benchmark's child processes (the relay and the consumer):
 * fork one with the fixture's names, wait for its `ready`, send it commands and wait for their
 * answers, and see it die (any wait fails then, rather than hang).
 */
import { type ChildProcess, fork } from "node:child_process";
import { EventEmitter, once } from "node:events";

/** A running child of the events benchmark. */
export interface BenchChild<Command> {
  readonly process: ChildProcess;
  /** Rejects when the child exits; never resolves. */
  readonly exited: Promise<never>;
  /** Sends `command` and waits for an answer of kind `answer` (one of `failures` rejects). */
  ask(command: Command, answer: string, failures?: string[]): Promise<void>;
  /** Ends the child (SIGTERM, SIGKILL after 10 s) and waits for its exit. */
  end(): Promise<void>;
}

/** How long a child may take to say it is ready, unless told otherwise. */
const READY_TIMEOUT_MS = 60_000;

/**
 * Forks `script` with `env` added to this process's environment; `onReport` sees every message
 * the child sends besides `ready` and the answers {@link BenchChild.ask} waits for. A child not
 * ready within `readyTimeoutMs` is killed (one stuck connecting, e.g. `connectNats` waiting for
 * its first connection, has no handler for its parent's going yet and would outlive the bench).
 */
export async function forkBenchChild<Command, Report extends { kind: string }>(
  script: URL,
  env: Record<string, string>,
  onReport: (report: Report) => void = () => {},
  { readyTimeoutMs = READY_TIMEOUT_MS }: { readyTimeoutMs?: number } = {},
): Promise<BenchChild<Command>> {
  const child = fork(script, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const name = script.pathname.split("/").pop();
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code, signal) => reject(new Error(`${name} exited (${signal ?? `code ${code}`})`))),
  );
  exited.catch(() => {}); // awaited wherever the benchmark waits on the child
  const answers = new EventEmitter();
  const ready = new Promise<void>((resolve) => {
    child.on("message", (report: Report) => {
      if (report.kind === "ready") resolve();
      else if (answers.listenerCount(report.kind) > 0) answers.emit(report.kind, report);
      else onReport(report);
    });
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${name} was not ready in ${readyTimeoutMs / 1000}s`)),
      readyTimeoutMs,
    );
  });
  try {
    await Promise.race([ready, exited, timeout]);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    process: child,
    exited,
    async ask(command, answer, failures = []) {
      const controller = new AbortController();
      const answered = Promise.race([
        once(answers, answer, { signal: controller.signal }),
        ...failures.map((kind) =>
          once(answers, kind, { signal: controller.signal }).then(([report]) => {
            throw new Error(`${name} answered ${kind}: ${JSON.stringify(report)}`);
          }),
        ),
      ]);
      // With a callback, a send to a child that is gone rejects here (without one, it is an
      // 'error' event on the child, which nothing handles: the bench would die uncleaned).
      const sent = new Promise<never>((_, reject) =>
        child.send(command as object, (err) => {
          if (err) reject(new Error(`${name} could not be sent ${JSON.stringify(command)}: ${err.message}`));
        }),
      );
      try {
        await Promise.race([answered, exited, sent]);
      } finally {
        controller.abort();
        answered.catch(() => {});
        sent.catch(() => {});
      }
    },
    async end() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await gone;
      clearTimeout(killer);
    },
  };
}
