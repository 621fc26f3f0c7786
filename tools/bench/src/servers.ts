/**
 * The servers a scenario compares, each run as its own child process (pinned to one CPU when
 * the machine has two): the real users service and the fixture servers of `fixtures/`.
 */

import { randomBytes } from "node:crypto";
import { access, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Health, HealthCheckResponse_ServingStatus } from "@meshwork/contracts/grpc/health/v1/health";
import { connectNats, streamName } from "@meshwork/events";
import { GATEWAY_NODE_OPTIONS } from "@meshwork/gateway/embedded";
import { generateIdentityKey } from "@meshwork/runtime";
import { testIdentity } from "@meshwork/runtime/testing";
import { type ManagedProcess, startProcess, waitFor } from "@meshwork/testing";
import { exporterEnv, startReceiver } from "@meshwork/tracestore";
import { jetstreamManager } from "@nats-io/jetstream";
import postgres from "postgres";
import { GC_REPORT_SIGNAL, type GcReport } from "./fixtures/fixture-process.js";
import { withGrpcClient } from "./grpc-client.js";

/** The repository root (this file is `tools/bench/{src,dist}/servers.*`). */
export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
/** The compiled fixtures, also when this module runs from `src/` (the tests). */
const fixturesDir = fileURLToPath(new URL("../dist/fixtures/", import.meta.url));

/** A server process that is up and answering. */
export interface RunningServer {
  name: string;
  /** `http://127.0.0.1:<port>` */
  url: string;
  pid: number;
  /** Every stdout/stderr line so far. */
  lines: readonly string[];
  /** Resident set size now, in MiB (VmRSS of /proc/<pid>/status); `undefined` if unreadable. */
  rssMb(): Promise<number | undefined>;
  /**
   * The GC pauses since the previous call (the first call: since the start). Only fixtures
   * (`fixtures/fixture-process.ts`) report them; `undefined` for other servers.
   */
  gcReport(): Promise<GcReport | undefined>;
  /**
   * The calls it answered so far by outcome (`OK`, a gRPC code's name such as
   * `ResourceExhausted`, `client_gone`), for a server that counts them (the gateway, on its admin
   * port); absent for the others. h2load sees HTTP statuses only: this names the gRPC errors
   * among what it counts as successes.
   */
  outcomes?(): Promise<Record<string, number>>;
  /** SIGTERM, then SIGKILL after 5 s; removes the server's temporary files. Idempotent. */
  stop(): Promise<void>;
}

/** How servers are started in this run. */
export interface StartContext {
  /** CPU to pin the server to with `taskset -c`; `undefined` runs it unpinned. */
  cpu: number | undefined;
  /** Reports progress. */
  log(line: string): void;
  /**
   * The most calls the load generator may have in flight at once (h2load's connections × streams
   * per connection), all from 127.0.0.1. A server that limits the calls of one client address
   * (the gateway: 256 by default) is told to allow as many: the bench's connections stand for many
   * clients, and a run that met such a limit measured its refusals (trailers-only answers in
   * microseconds, which h2load counts as successes) instead of the server.
   */
  callsInFlight?: number;
}

/** A server a scenario can measure. */
export interface ServerSpec {
  /** Row name in the report. */
  name: string;
  /** One line on what it is. */
  description: string;
  /**
   * `fixed`: an in-memory fixture that knows the fixed user; `seeded`: a real service whose data
   * the scenario must create first.
   */
  data: "fixed" | "seeded";
  /** Headers every request to it needs (a token), once it runs. */
  headers?(server: RunningServer): Record<string, string>;
  /** Why the server cannot run here (it is then skipped with this note), or `undefined`. */
  unavailable(): Promise<string | undefined>;
  start(context: StartContext): Promise<RunningServer>;
}

const STOP_GRACE_MS = 5000;

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Clock ticks in a `/proc/<pid>/stat` line: user + system, plus (with `reaped`) those of the
 * children the process has reaped (cutime + cstime).
 */
function statTicks(stat: string, reaped: boolean): number {
  // Fields after the command name (which may hold spaces): state is the 3rd, utime the 14th,
  // stime the 15th, cutime/cstime the 16th/17th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const own = Number(fields[11]) + Number(fields[12]);
  return reaped ? own + Number(fields[13]) + Number(fields[14]) : own;
}

/** CPU time a process has used (user + system), in clock ticks; `undefined` if unreadable. */
export async function readCpuTicks(pid: number): Promise<number | undefined> {
  try {
    return statTicks(await readFile(`/proc/${pid}/stat`, "utf8"), false);
  } catch {
    return undefined;
  }
}

/** One process in a {@link readCpu} reading: its group, parent, and ticks (with reaped children). */
interface ProcessTicks {
  group: string;
  pid: number;
  ppid: number;
  ticks: number;
}

/** Clock ticks of every process of a group, by process (`pid/start time`, so a reused pid is new). */
export type CpuReading = Map<string, ProcessTicks>;

/**
 * Clock ticks (user + system, and those of reaped children) every process of a group has used so
 * far (`groupOf` names a process's group from its pid and command name, or leaves it out). Two
 * readings around a phase of a benchmark give the CPU a whole set of processes (a service and its
 * Postgres backends, say) spent on it: {@link cpuTicksSpent}.
 */
export async function readCpu(
  groupOf: (pid: number, comm: string) => string | undefined,
): Promise<CpuReading> {
  const reading: CpuReading = new Map();
  for (const entry of await readdir("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const group = groupOf(pid, comm);
    if (!group) continue;
    // Fields after the command name: ppid is the 4th field, starttime the 22nd.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    reading.set(`${pid}/${fields[19]}`, {
      group,
      pid,
      ppid: Number(fields[1]),
      ticks: statTicks(stat, true),
    });
  }
  return reading;
}

/**
 * Ticks each group spent between two {@link readCpu} readings, never negative. Summing group
 * totals is not enough: a process that exits between the readings (a Postgres backend closed by
 * its pool; a whole Postgres cluster of another test on this shared machine) takes its ticks out
 * of the second total unless a parent in the group reaped it in time, and the readings are not
 * atomic. So each process counts what it spent itself: its growth, or all of it when it started
 * in between. A process that exited in between counts through its parent's reaped-children ticks
 * when its parent was read (less what the child had at the first reading; its last moments go to
 * the parent's group), else not at all: its last moments are lost rather than its whole past
 * subtracted.
 */
export function cpuTicksSpent(before: CpuReading, after: CpuReading): Map<string, number> {
  const spent = new Map<string, number>();
  const byPid = new Map([...after.values()].map((p) => [p.pid, p]));
  const pastChildren = new Map<ProcessTicks, number>(); // a parent -> ticks its exited children had before
  for (const [key, p] of before) {
    const parent = after.has(key) ? undefined : byPid.get(p.ppid);
    // Whatever the parent's group (the bench splits a postmaster from its backends): its
    // reaped-children ticks now hold the child's whole past, which was spent before.
    if (parent) pastChildren.set(parent, (pastChildren.get(parent) ?? 0) + p.ticks);
  }
  for (const [key, p] of after) {
    const grown = p.ticks - (before.get(key)?.ticks ?? 0) - (pastChildren.get(p) ?? 0);
    spent.set(p.group, (spent.get(p.group) ?? 0) + Math.max(0, grown));
  }
  return spent;
}

/**
 * Waits until none of `pids` uses more than 5% of a CPU over a 300 ms window (at most
 * `timeoutMs`), so a server that keeps working after its own run (flushing, vacuuming, relaying)
 * does not steal the CPU of the next one measured. Returns whether they went quiet.
 */
export async function waitForQuiet(pids: readonly number[], timeoutMs = 15_000): Promise<boolean> {
  const windowMs = 300;
  const deadline = Date.now() + timeoutMs;
  let before = await Promise.all(pids.map(readCpuTicks));
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, windowMs));
    const after = await Promise.all(pids.map(readCpuTicks));
    // Clock ticks are 10 ms on Linux: 5% of 300 ms is 1.5 ticks.
    const busy = after.some(
      (t, i) => t !== undefined && before[i] !== undefined && t - (before[i] as number) > 1.5,
    );
    if (!busy) return true;
    before = after;
  }
  return false;
}

/** Reads VmRSS of a process, in MiB. */
export async function readRssMb(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m?.[1] ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A TCP port that was free a moment ago on `host`. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === "string") reject(new Error("no port"));
        else resolve(address.port);
      });
    });
  });
}

/** Every process started and not yet stopped, for the orchestrator's signal handler. */
const live = new Set<RunningServer>();

/** Stops every server still running (on SIGINT/SIGTERM of the harness, or after a failure). */
export async function stopAllServers(): Promise<void> {
  await Promise.allSettled([...live].map((s) => s.stop()));
}

async function stopProcess(proc: ManagedProcess): Promise<void> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const killer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  try {
    await proc.stop("SIGTERM");
  } finally {
    clearTimeout(killer);
  }
}

interface LaunchOptions {
  name: string;
  script: string;
  env: Record<string, string | undefined>;
  /** Node flags before the script (a local mesh's, say: `meshNodeArgs`). */
  nodeArgs?: readonly string[];
  context: StartContext;
  /** Resolves with the port once the server answers; `proc` is the started process. */
  ready(proc: ManagedProcess): Promise<number>;
  /** Runs after the process has stopped. */
  cleanup?: () => Promise<void>;
  /** A fixture (`fixtures/fixture-process.ts`): it reports its GC pauses when asked. */
  reportsGc?: boolean;
}

function exitedError(name: string, proc: ManagedProcess, code: number | string): Error {
  const tail = proc.lines.slice(-20).join("\n");
  return new Error(`${name} exited (${code}) before it was ready${tail ? `:\n${tail}` : ""}`);
}

async function launch(options: LaunchOptions): Promise<RunningServer> {
  const { cpu } = options.context;
  // With MESHWORK_BENCH_PROFILE_SERVERS=<dir>, every server process writes a CPU profile of its
  // whole run there (`CPU.*.cpuprofile`, open it in Chrome's DevTools).
  const profileDir = process.env.MESHWORK_BENCH_PROFILE_SERVERS;
  const flags = [...(options.nodeArgs ?? [])];
  if (profileDir) flags.push("--cpu-prof", `--cpu-prof-dir=${profileDir}`);
  const node = [process.execPath, ...flags, options.script];
  const [command, args] =
    cpu === undefined ? [node[0] as string, node.slice(1)] : ["taskset", ["-c", String(cpu), ...node]];
  // taskset execs node in place, so the child's pid is the server's.
  const proc = startProcess(command, args, { env: options.env });
  let stopped: Promise<void> | undefined;
  const server: RunningServer = {
    name: options.name,
    url: "",
    pid: proc.child.pid ?? -1,
    lines: proc.lines,
    rssMb: () => readRssMb(server.pid),
    gcReport: async () => undefined,
    stop() {
      stopped ??= (async () => {
        try {
          await stopProcess(proc);
        } finally {
          live.delete(server);
          await options.cleanup?.();
        }
      })();
      return stopped;
    },
  };
  live.add(server);
  try {
    const exited = proc.exited.then((code) => {
      throw exitedError(options.name, proc, code);
    });
    const port = await Promise.race([options.ready(proc), exited]);
    server.url = `http://127.0.0.1:${port}`;
    if (options.reportsGc) server.gcReport = fixtureGcReporter(server.pid, server.lines);
    exited.catch(() => {});
    return server;
  } catch (err) {
    await server.stop();
    throw err;
  }
}

/** Waits for the `"msg":"listening"` JSON line every Meshwork process prints, and takes its port. */
async function listeningPort(proc: ManagedProcess, timeoutMs = 30_000): Promise<number> {
  const line = await proc.waitForLog((l) => l.msg === "listening" && typeof l.port === "number", timeoutMs);
  return line.port as number;
}

/** Polls `grpc.health.v1.Health/Check` (service "") until it answers SERVING. */
export async function waitForServing(url: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const status = await withGrpcClient(
        url,
        Health,
        async (health) => (await health.check({ service: "" })).status,
      );
      if (status === HealthCheckResponse_ServingStatus.SERVING) return;
      last = `status ${HealthCheckResponse_ServingStatus[status]}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not report SERVING within ${timeoutMs} ms (${last})`);
}

/**
 * Asks a fixture for its GC pauses since its last report (its {@link GC_REPORT_SIGNAL} handler
 * prints one `"msg":"gc"` line) and waits for the answer.
 */
function fixtureGcReporter(pid: number, lines: readonly string[]): () => Promise<GcReport> {
  // process.kill(-1, ...) would signal every process of this user.
  if (!(pid > 0)) throw new Error(`no pid to ask for GC reports: ${pid}`);
  let seq = 0;
  return async () => {
    seq++;
    const want = seq;
    process.kill(pid, GC_REPORT_SIGNAL);
    return waitFor(
      () => {
        for (let i = lines.length - 1; i >= 0; i--) {
          const line = lines[i] as string;
          if (!line.includes('"msg":"gc"')) continue;
          const gc = (JSON.parse(line) as { gc?: GcReport }).gc;
          if (gc?.seq === want) return gc;
        }
        return undefined;
      },
      { timeoutMs: 10_000, what: `GC report ${want} from pid ${pid}` },
    );
  };
}

/** A fixture server compiled from `src/fixtures/<file>.ts`. */
function fixture(
  name: string,
  file: string,
  description: string,
  env: Record<string, string> = {},
): ServerSpec {
  const script = join(fixturesDir, `${file}.js`);
  return {
    name,
    description,
    data: "fixed",
    async unavailable() {
      return (await exists(script)) ? undefined : `${script} not found (run the build first)`;
    },
    start(context) {
      return launch({
        name,
        script,
        env: { ...env, HOST: "127.0.0.1", PORT: "0" },
        context,
        ready: (proc) => listeningPort(proc),
        reportsGc: true,
      });
    },
  };
}

/** The gateway's key as the bench's users service trusts it (calls go straight to its port). */
const benchIdentity = testIdentity(["gateway"]);

/**
 * The real users service (`apps/users/dist/main.js`) on a fresh PGlite database, or on the
 * Postgres server of `options.databaseUrl` (else MESHWORK_BENCH_DATABASE_URL).
 */
export function usersService(
  options: {
    name?: string;
    databaseUrl?: string;
    /** The key users' signing keys are sealed with in that database (a mesh's own, from its home). */
    keyEncryptionKeyFile?: string;
    /** The file to run (a local mesh's users bundle, say); default `apps/users/dist/main.js`. */
    script?: string;
    /** Node flags the process starts with (none: Node's defaults). */
    nodeArgs?: readonly string[];
    /** More environment (pool settings, say), over the bench's own. */
    env?: Record<string, string>;
  } = {},
): ServerSpec {
  const script = options.script ?? join(repoRoot, "apps/users/dist/main.js");
  const name = options.name ?? "users service";
  return {
    name,
    description: options.databaseUrl
      ? "apps/users: the real service, runtime + its database on a Postgres server"
      : "apps/users: the real service, runtime + PGlite (or MESHWORK_BENCH_DATABASE_URL)",
    data: "seeded",
    // What the gateway sends upstream for an authenticated admin (a signed assertion the service
    // trusts): GetUser answers the user themselves or an admin only.
    headers: () => benchIdentity.headers("users", "00000000-0000-7000-8000-0000000000ad", "admin"),
    async unavailable() {
      return (await exists(script)) ? undefined : `${script} not found (build apps/users first)`;
    },
    async start(context) {
      const databaseUrl = options.databaseUrl ?? process.env.MESHWORK_BENCH_DATABASE_URL;
      const dataDir = databaseUrl ? undefined : await mkdtemp(join(tmpdir(), "meshwork-bench-users-"));
      // LOG_LEVEL=warn keeps the per-call `rpc` log line out of the measurement, but it also
      // hides the `listening` line: so the port is chosen here rather than PORT=0.
      const port = await freePort();
      // Its events go to streams of its own, removed afterwards, not the machine's USERS stream.
      const namespace = `bench${randomBytes(4).toString("hex")}.`;
      context.log(
        `  ${name}: ${databaseUrl ? `DATABASE_URL ${new URL(databaseUrl).host}${new URL(databaseUrl).pathname}` : `DATA_DIR=${dataDir}`}`,
      );
      return launch({
        name,
        script,
        env: {
          HOST: "127.0.0.1",
          PORT: String(port),
          LOG_LEVEL: "warn",
          DATA_DIR: dataDir,
          DATABASE_URL: databaseUrl,
          EVENTS_NAMESPACE: namespace,
          DISCOVERY: "static",
          // Given, so no generated secret is written to a .meshwork of the working directory.
          USERS_BOOTSTRAP_SECRET: randomBytes(32).toString("base64url"),
          IDENTITY_TRUST: benchIdentity.trustText,
          USERS_KEY_ENCRYPTION_KEY_FILE: options.keyEncryptionKeyFile,
          ...options.env,
        },
        nodeArgs: options.nodeArgs,
        context,
        async ready() {
          const url = `http://127.0.0.1:${port}`;
          await waitForServing(url);
          return port;
        },
        async cleanup() {
          if (dataDir) await rm(dataDir, { recursive: true, force: true });
          const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "bench-cleanup");
          const jsm = await jetstreamManager(nc);
          await jsm.streams.delete(streamName(namespace, "USERS")).catch(() => {});
          await nc.close();
        },
      });
    },
  };
}

/** The Meshwork runtime (`createService`, all interceptors on) with an in-memory handler. */
export function runtimeFixture(): ServerSpec {
  return fixture(
    "runtime (in-memory)",
    "runtime-server",
    "@meshwork/runtime createService, GetUser from memory",
  );
}

/**
 * The runtime fixture with every call's span recorded and exported over OTLP (http/protobuf,
 * batched) to the embedded receiver of `@meshwork/tracestore`, set up as `meshctl up` sets up a
 * mesh under `npm start`: the receiver runs in the supervising process (here the bench's),
 * decodes every export and keeps the recent traces, and the service gets the environment
 * `meshctl up` gives it. Against the runtime row (tracing off) in the same run: what seeing
 * your traces locally costs.
 */
export function runtimeTracedFixture(): ServerSpec {
  const script = join(fixturesDir, "runtime-server.js");
  const name = "runtime + OTLP traces";
  return {
    name,
    description:
      "the runtime fixture exporting a span per call over OTLP/HTTP to the embedded trace receiver",
    data: "fixed",
    async unavailable() {
      return (await exists(script)) ? undefined : `${script} not found (run the build first)`;
    },
    async start(context) {
      const receiver = await startReceiver({ host: "127.0.0.1", port: 0 });
      let served: number | undefined;
      const server = await launch({
        name,
        script,
        env: {
          HOST: "127.0.0.1",
          PORT: "0",
          // What `meshctl up` gives every process.
          ...exporterEnv(receiver.url),
        },
        context,
        ready: (proc) => listeningPort(proc),
        reportsGc: true,
        async cleanup() {
          // Every call is a trace of one span: all of them should have reached the receiver
          // (the batch processor drops spans when its queue is full).
          const { traces, spans, evictedTraces } = receiver.traces.stats();
          const received = traces + evictedTraces;
          context.log(
            `${name}: the receiver holds ${traces} traces (${spans} spans) and dropped ${evictedTraces} older ones; ` +
              `${received} spans received for ${served ?? "?"} calls served` +
              (served !== undefined && received < served ? ` (${served - received} spans lost)` : ""),
          );
          await receiver.close();
        },
      });
      const stop = server.stop;
      server.stop = async () => {
        served ??= await servedCalls(server.url).catch(() => undefined);
        await stop();
      };
      return server;
    },
  };
}

/** How many calls a runtime process has served: the sum of its `rpc_server_requests_total`. */
async function servedCalls(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("rpc_server_requests_total")) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

/** A bare `@grpc/grpc-js` server with an in-memory handler: the baseline. */
export function grpcJsFixture(): ServerSpec {
  return fixture(
    "grpc-js (in-memory)",
    "grpc-js-server",
    "bare @grpc/grpc-js server, same proto, GetUser from memory",
  );
}

/**
 * A bare grpc-js server running the users service's GetUser query through postgres.js, same
 * pool size (`fixtures/grpc-js-pg-server.ts`): the ceiling of a database-backed RPC.
 */
export function grpcJsPostgresFixture(): ServerSpec {
  return onFreshDatabase((databaseUrl) =>
    fixture(
      "grpc-js + postgres",
      "grpc-js-pg-server",
      "bare @grpc/grpc-js server, GetUser runs the users service's SQL through postgres.js (pool 10)",
      { DATABASE_URL: databaseUrl },
    ),
  );
}

/** The users service on a database of its own on the Postgres server (see {@link onFreshDatabase}). */
export function usersServiceOnPostgres(): ServerSpec {
  return onFreshDatabase((databaseUrl) => usersService({ name: "users service (Postgres)", databaseUrl }));
}

/**
 * The server of `make(url)` on a database of its own: created on the Postgres server of
 * MESHWORK_BENCH_PG_URL (an admin URL; default the machine's
 * `postgres://postgres@127.0.0.1:5432/postgres`) before it starts, dropped after it stops. The
 * row is skipped, saying why, when no server answers there.
 */
export function onFreshDatabase(make: (databaseUrl: string) => ServerSpec): ServerSpec {
  const adminUrl = process.env.MESHWORK_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const shape = make(adminUrl);
  const admin = () => postgres(adminUrl, { max: 1, connect_timeout: 5, onnotice: () => {} });
  return {
    ...shape,
    async unavailable() {
      const sql = admin();
      try {
        await sql`select 1`;
      } catch (err) {
        return `no Postgres server at ${new URL(adminUrl).host} (MESHWORK_BENCH_PG_URL): ${(err as Error).message}`;
      } finally {
        await sql.end({ timeout: 1 });
      }
      return shape.unavailable();
    },
    async start(context) {
      const name = `bench_${randomBytes(4).toString("hex")}`;
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      const sql = admin();
      const drop = async () => {
        await sql.unsafe(`drop database if exists ${name} with (force)`).catch(() => {});
        await sql.end({ timeout: 1 });
      };
      await sql.unsafe(`create database ${name}`);
      let server: RunningServer;
      try {
        server = await make(url.toString()).start(context);
      } catch (err) {
        await drop();
        throw err;
      }
      const stop = server.stop.bind(server);
      let stopped: Promise<void> | undefined;
      server.stop = () => {
        stopped ??= stop().finally(drop);
        return stopped;
      };
      return server;
    },
  };
}

/** A bare `node:http2` server answering a pre-encoded response: the ceiling. */
export function http2EchoFixture(): ServerSpec {
  return fixture(
    "node:http2 echo",
    "echo-server",
    "bare node:http2, fixed pre-encoded gRPC answer to every POST",
  );
}

/**
 * A proxy fixture process (`script`) in front of its own runtime fixture (`UPSTREAM_URL`), both
 * pinned to the servers' CPU: against the runtime row, what the hop costs.
 */
function inFrontOfRuntime(
  spec: Pick<ServerSpec, "name" | "description" | "headers"> & {
    script: string;
    asserts?: boolean;
    nodeArgs?: readonly string[];
    /** `NODE_OPTIONS` of the process (before any the bench's own environment has). */
    nodeOptions?: string;
  },
): ServerSpec {
  const script = join(fixturesDir, spec.script);
  // A proxy that asserts its callers (the gateway) does so with a key the runtime trusts, as in
  // the mesh; behind one that does not, the runtime trusts no one and enforces no policy.
  const key = generateIdentityKey();
  const upstreamSpec = fixture(
    "runtime (in-memory)",
    "runtime-server",
    "the upstream",
    spec.asserts ? { IDENTITY_TRUST: `gateway=${key.publicKey}`, IDENTITY_AUDIENCE: "users" } : {},
  );
  return {
    name: spec.name,
    description: spec.description,
    data: "fixed",
    headers: spec.headers,
    async unavailable() {
      return (await exists(script)) ? undefined : `${script} not found (run the build first)`;
    },
    async start(context) {
      const upstream = await upstreamSpec.start(context);
      try {
        return await launch({
          name: spec.name,
          script,
          env: {
            HOST: "127.0.0.1",
            PORT: "0",
            UPSTREAM_URL: upstream.url,
            ...(spec.asserts ? { IDENTITY_KEY: key.privateKey } : {}),
            ...(context.callsInFlight ? { LOAD_CALLS_IN_FLIGHT: String(context.callsInFlight) } : {}),
            ...(spec.nodeOptions
              ? { NODE_OPTIONS: [spec.nodeOptions, process.env.NODE_OPTIONS].filter(Boolean).join(" ") }
              : {}),
          },
          context,
          ready: (proc) => listeningPort(proc),
          nodeArgs: spec.nodeArgs,
          cleanup: () => upstream.stop(),
          // The proxy's own pauses (its upstream is another process).
          reportsGc: true,
        });
      } catch (err) {
        await upstream.stop();
        throw err;
      }
    },
  };
}

/**
 * Sums a Prometheus exposition's samples of `metric` by their `code` label (the gateway's
 * `gateway_requests_total{route,code}` is one sample per route and outcome).
 */
export function countsByCode(exposition: string, metric: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of exposition.split("\n")) {
    if (!line.startsWith(`${metric}{`)) continue;
    const code = /[{,]code="([^"]*)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (code !== undefined && Number.isFinite(value)) counts[code] = (counts[code] ?? 0) + value;
  }
  return counts;
}

/** The gateway's calls by outcome, from its admin port's metrics. */
async function gatewayOutcomes(adminUrl: string): Promise<Record<string, number>> {
  const res = await fetch(`${adminUrl}/stats/prometheus`);
  if (!res.ok) throw new Error(`${adminUrl}/stats/prometheus answered HTTP ${res.status}`);
  return countsByCode(await res.text(), "gateway_requests_total");
}

/** The gateway row's name. */
export const GATEWAY_SERVER = "gateway -> runtime";

/**
 * The gateway (`apps/gateway`, in the gateway-server fixture) in front of its own runtime
 * fixture: what a hop through the gateway costs (CPU per call and latency). Requests carry the
 * token the fixture prints.
 */
export function gatewayFixture(): ServerSpec {
  const spec = inFrontOfRuntime({
    name: GATEWAY_SERVER,
    description: "apps/gateway (JWT verified, policy, routing) in front of the runtime fixture",
    script: "gateway-server.js",
    asserts: true,
    // The Node options the gateway is deployed with (its package.json's, as the image and
    // `meshctl up` run it); flags in MESHWORK_BENCH_GATEWAY_NODE_ARGS come after them and win
    // (`--max-semi-space-size=16`, V8's default, say), to compare them.
    nodeOptions: GATEWAY_NODE_OPTIONS,
    nodeArgs: process.env.MESHWORK_BENCH_GATEWAY_NODE_ARGS?.split(" ").filter(Boolean),
    headers(server) {
      for (const line of server.lines) {
        if (!line.includes('"token"')) continue;
        try {
          const token = (JSON.parse(line) as { token?: string }).token;
          if (token) return { authorization: `Bearer ${token}` };
        } catch {
          // not a JSON line
        }
      }
      throw new Error("the gateway fixture printed no token");
    },
  });
  return {
    ...spec,
    async start(context) {
      const server = await spec.start(context);
      // Its `listening` line names its admin port too.
      const listening = server.lines.find((l) => l.includes('"listening"') && l.includes('"adminUrl"'));
      const adminUrl = listening && (JSON.parse(listening) as { adminUrl?: string }).adminUrl;
      if (adminUrl) server.outcomes = () => gatewayOutcomes(adminUrl);
      return server;
    },
  };
}

/**
 * The ceiling of any gateway on `node:http2`: a bare pass-through proxy (the proxy-server
 * fixture: no routing, auth, limits, logs or metrics) in front of its own runtime fixture.
 */
export function proxyFixture(): ServerSpec {
  return inFrontOfRuntime({
    name: "node:http2 proxy -> runtime",
    description: "bare node:http2 pass-through proxy in front of the runtime fixture (a gateway's ceiling)",
    script: "proxy-server.js",
    // The same Node options as the gateway it is the ceiling of: the ratios then measure what
    // the gateway's code costs, not a V8 setting only one of them runs with (a 4 MB semi-space
    // took the proxy's RSS from ~123 to ~105 MB too, issue 23). MESHWORK_BENCH_PROXY_NODE_ARGS:
    // flags after them, to compare.
    nodeOptions: GATEWAY_NODE_OPTIONS,
    nodeArgs: process.env.MESHWORK_BENCH_PROXY_NODE_ARGS?.split(" ").filter(Boolean),
  });
}
