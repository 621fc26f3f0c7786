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

/** How long a child may take to say it is ready. */
const READY_TIMEOUT_MS = 60_000;

/**
 * Forks `script` with `env` added to this process's environment; `onReport` sees every message
 * the child sends besides `ready` and the answers {@link BenchChild.ask} waits for.
 */
export async function forkBenchChild<Command, Report extends { kind: string }>(
  script: URL,
  env: Record<string, string>,
  onReport: (report: Report) => void = () => {},
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
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(
      () => reject(new Error(`${name} was not ready in ${READY_TIMEOUT_MS / 1000}s`)),
      READY_TIMEOUT_MS,
    ).unref(),
  );
  await Promise.race([ready, exited, timeout]);
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
      child.send(command as object);
      try {
        await Promise.race([answered, exited]);
      } finally {
        controller.abort();
        answered.catch(() => {});
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
