import { type ChildProcess, spawn } from "node:child_process";

/**
 * The watchdog's program. It reads `+PGID` / `-PGID` lines on stdin (groups to kill / groups
 * already stopped); when stdin ends (the test process exited, however: a failing test, vitest
 * ending its worker, SIGKILL) it sends SIGKILL to every group still listed, then exits.
 */
const WATCHDOG = `
const groups = new Set();
let rest = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  const lines = (rest + chunk).split("\\n");
  rest = lines.pop();
  for (const l of lines) {
    const pgid = Number(l.slice(1));
    if (!(pgid > 1)) continue;
    if (l[0] === "+") groups.add(pgid);
    else groups.delete(pgid);
  }
});
const end = () => {
  for (const pgid of groups) {
    try { process.kill(-pgid, "SIGKILL"); } catch {}
  }
  process.exit(0);
};
process.stdin.on("end", end);
process.stdin.on("error", end);
`;

const groups = new Set<number>();
let watchdog: ChildProcess | undefined;
let hooked = false;

function tell(line: string): void {
  if (!watchdog) {
    // In a session of its own, so that nothing aimed at the test's process group stops it first.
    watchdog = spawn(process.execPath, ["-e", WATCHDOG], {
      stdio: ["pipe", "ignore", "ignore"],
      detached: true,
    });
    watchdog.unref();
    // The pipe must not keep the test process alive either.
    (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
    watchdog.stdin?.on("error", () => {});
    watchdog.once("exit", () => {
      watchdog = undefined;
    });
    // A new watchdog learns every group guarded now (the one being added included).
    for (const pgid of groups) watchdog.stdin?.write(`+${pgid}\n`);
    return;
  }
  watchdog.stdin?.write(`${line}\n`);
}

/** SIGKILLs a process group; false when no process of it was left. */
export function killGroup(pgid: number, signal: NodeJS.Signals = "SIGKILL"): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure the process group `pgid` (a child spawned with `detached: true`, which leads a group
 * of its own that its descendants join) dies with this process: on a normal exit of this process
 * (an exit hook) and on any other end, SIGKILL included (a watchdog process, started once, kills
 * every group still guarded when its stdin, a pipe from this process, closes). A test that fails
 * before its teardown, or a vitest worker that is killed, so leaves no service running.
 * Call {@link releaseGroup} once the group is stopped.
 */
export function guardGroup(pgid: number): void {
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const g of groups) killGroup(g);
    });
  }
  groups.add(pgid);
  tell(`+${pgid}`);
}

/** Forgets a group {@link guardGroup} guarded (it was stopped; its id may be reused). */
export function releaseGroup(pgid: number): void {
  if (groups.delete(pgid)) tell(`-${pgid}`);
}
