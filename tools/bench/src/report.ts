/**
 * Bench results: their shape (also the JSON written to `.bench/results.json`), the ratios
 * against the baseline, and the table printed to stdout.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { ClientProtocolResult, StreamMemoryResult } from "./extras.js";
import type { GcPauses } from "./fixtures/fixture-process.js";

/** The fixed-rate latency of one server. */
export interface LatencyResult {
  /** Requests per second asked for. */
  targetRate: number;
  /** Requests per second actually sent (less than asked when the server could not keep up). */
  achievedRate: number;
  /** The server could not sustain `targetRate`: the latencies are mostly queueing. */
  saturated: boolean;
  /** Successful requests measured. */
  count: number;
  /** Failed streams. */
  failed: number;
  /** HTTP-successful answers that carried no message: gRPC errors. */
  withoutMessage: number;
  /** The outcomes other than OK the server counted over the run, when it counts them (the gateway). */
  errors?: Record<string, number>;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** The server's CPU time over the run per successful call, us (Linux clock ticks: 10 ms each). */
  cpuUsPerCall?: number;
  /** The server process's GC pauses during the run (fixtures only). */
  gc?: { major: GcPauses; minor: GcPauses };
}

/** One server's row of a scenario. */
export interface ServerResult {
  server: string;
  description: string;
  status: "ok" | "skipped" | "failed";
  /** Why skipped or failed, or a warning about an ok result. */
  notes: string[];
  /** Max throughput, completed requests per second: the median of the rounds. */
  reqPerSec?: number;
  /** Max throughput of each round, in the order measured. */
  reqPerSecRounds?: number[];
  /** h2load's counts of the max-rate run. */
  maxRun?: {
    requests: number;
    succeeded: number;
    failed: number;
    errored: number;
    timeout: number;
    non2xx: number;
    /** HTTP-successful answers that carried no message: gRPC errors (a lower bound here). */
    withoutMessage: number;
    /**
     * The outcomes other than OK the server counted over the run, when it counts them (the
     * gateway); `client_gone`: calls in flight when h2load stopped.
     */
    errors?: Record<string, number>;
  };
  /** p99 of each latency round, in the order measured. */
  p99Rounds?: number[];
  /** Every latency round, in the order measured (with each round's GC pauses). */
  latencyRounds?: LatencyResult[];
  /** Latency at the scenario's fixed rate: the round with the median p99. */
  latency?: LatencyResult;
  /** Latency at half the server's own max, measured when it could not sustain the fixed rate. */
  latencyAtHalfOwnMax?: LatencyResult;
  /** Resident set size after the runs, MiB. */
  rssMb?: number;
  /**
   * CPU time of the server's process per completed call in the max-rate runs, microseconds (the
   * median of the rounds): steadier than rates on a noisy machine. For the gateway row, the
   * gateway process alone (its upstream runs in another).
   */
  cpuUsPerCall?: number;
  cpuUsPerCallRounds?: number[];
  /**
   * CPU time of the bench's own process per completed call in each max-rate round, microseconds:
   * h2load's supervisor, and in the traced row the embedded trace receiver, which runs there.
   */
  benchCpuUsPerCallRounds?: number[];
  /** Throughput / baseline's throughput. */
  reqPerSecRatio?: number;
  /** CPU per call / baseline's (lower is better). */
  cpuRatio?: number;
  /** p99 / baseline's p99 (lower is better). */
  p99Ratio?: number;
}

/** The results of one scenario. */
export interface ScenarioResult {
  scenario: string;
  method: string;
  baseline: string;
  /** The rate the latency was measured at, and where it came from. */
  latencyRate: number | undefined;
  latencyRateSource: string;
  servers: ServerResult[];
}

/** Everything one run measured, as written to the JSON file. */
export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  environment: {
    node: string;
    h2load: string;
    cpus: number;
    /** CPU of the servers and of h2load, or `null` when unpinned. */
    serverCpu: number | null;
    loadCpu: number | null;
  };
  settings: {
    durationS: number;
    warmUpS: number;
    clients: number;
    streams: number;
    latencyClients: number;
    rounds: number;
  };
  scenarios: ScenarioResult[];
  /** End-to-end client protocol comparison (see extras.ts). */
  clientProtocols?: ClientProtocolResult[];
  /** Server memory per 1000 open streams (see extras.ts). */
  streamMemory?: StreamMemoryResult[];
}

/**
 * The outcomes other than `OK` counted between two readings of a server's counts, by name (those
 * that grew only); `undefined` unless both readings exist.
 */
export function errorsBetween(
  before: Record<string, number> | undefined,
  after: Record<string, number> | undefined,
): Record<string, number> | undefined {
  if (!before || !after) return undefined;
  const errors: Record<string, number> = {};
  for (const [outcome, n] of Object.entries(after)) {
    const grew = n - (before[outcome] ?? 0);
    if (outcome !== "OK" && grew > 0) errors[outcome] = grew;
  }
  return errors;
}

/** Adds up the errors of several runs; `undefined` when no run has counts. */
export function sumErrors(
  runs: ReadonlyArray<Record<string, number> | undefined>,
): Record<string, number> | undefined {
  let sum: Record<string, number> | undefined;
  for (const errors of runs) {
    if (!errors) continue;
    sum ??= {};
    for (const [outcome, n] of Object.entries(errors)) sum[outcome] = (sum[outcome] ?? 0) + n;
  }
  return sum;
}

/**
 * `N answers without a message (gRPC errors)`, with what the server counted when it counts its
 * outcomes: `...; the server counted ResourceExhausted 64`.
 */
export function describeWithoutMessage(
  withoutMessage: number,
  errors: Record<string, number> | undefined,
): string {
  const text = `${withoutMessage} answers without a message (gRPC errors)`;
  if (!errors) return text;
  const named = Object.entries(errors)
    .sort((a, b) => b[1] - a[1])
    .map(([outcome, n]) => `${outcome} ${n}`);
  return `${text}; the server counted ${named.length > 0 ? named.join(", ") : "no error"}`;
}

/** Fills in each server's ratios against the scenario's baseline (where both numbers exist). */
export function withRatios(result: ScenarioResult): ScenarioResult {
  const base = result.servers.find((s) => s.server === result.baseline && s.status === "ok");
  return {
    ...result,
    servers: result.servers.map((s) => {
      const out: ServerResult = { ...s };
      delete out.reqPerSecRatio;
      delete out.p99Ratio;
      delete out.cpuRatio;
      if (base?.reqPerSec && s.reqPerSec !== undefined) out.reqPerSecRatio = s.reqPerSec / base.reqPerSec;
      if (base?.cpuUsPerCall && s.cpuUsPerCall !== undefined)
        out.cpuRatio = s.cpuUsPerCall / base.cpuUsPerCall;
      if (base?.latency && s.latency && base.latency.p99Ms > 0)
        out.p99Ratio = s.latency.p99Ms / base.latency.p99Ms;
      return out;
    }),
  };
}

function fixed(value: number | undefined, digits: number): string {
  return value === undefined || !Number.isFinite(value) ? "-" : value.toFixed(digits);
}

function ratio(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? "-" : `${value.toFixed(2)}x`;
}

/** Renders rows as a plain-text table, numbers right-aligned. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** The printed report of one scenario: heading, table, and the notes under it. */
export function formatScenario(result: ScenarioResult, settings: BenchReport["settings"]): string {
  const baseName = result.baseline.replace(/ \(.*\)$/, "");
  const header = [
    "server",
    "req/s",
    `vs ${baseName}`,
    "CPU us/call",
    `CPU vs ${baseName}`,
    "p50 ms",
    "p99 ms",
    `p99 vs ${baseName}`,
    "RSS MB",
  ];
  const rows = result.servers.map((s) => {
    if (s.status !== "ok") return [s.server, s.status, "", "", "", "", "", "", ""];
    const mark = s.latency?.saturated ? "*" : "";
    return [
      s.server,
      fixed(s.reqPerSec, 0),
      ratio(s.reqPerSecRatio),
      fixed(s.cpuUsPerCall, 1),
      ratio(s.cpuRatio),
      `${fixed(s.latency?.p50Ms, 2)}${mark}`,
      `${fixed(s.latency?.p99Ms, 2)}${mark}`,
      `${ratio(s.p99Ratio)}${s.p99Ratio === undefined ? "" : mark}`,
      fixed(s.rssMb, 1),
    ];
  });
  const lines = [
    `== ${result.scenario} (${result.method}) ==`,
    renderTable(header, rows),
    "",
    `max rate: h2load -c ${settings.clients} -m ${settings.streams}, median of ${settings.rounds} rounds of ${settings.durationS}s` +
      ` (servers side by side, rounds alternating, a ${settings.warmUpS}s warm-up before each run);` +
      ` latency (round with the median p99 of ${settings.rounds}):` +
      ` ${result.latencyRate === undefined ? "not measured" : `${Math.round(result.latencyRate)} req/s`}` +
      ` (${result.latencyRateSource}), ${settings.latencyClients} connections, ${settings.durationS}s`,
  ];
  if (result.servers.some((s) => s.latency?.saturated)) {
    lines.push(
      "* could not sustain the latency rate: these latencies are queueing (see achieved rate in the JSON)",
    );
  }
  const hop = result.servers.find((s) => s.server === "gateway -> runtime" && s.status === "ok");
  const direct = result.servers.find((s) => s.server === "runtime (in-memory)" && s.status === "ok");
  if (hop?.reqPerSec && direct?.reqPerSec) {
    const added = (q: "p50Ms" | "p99Ms") =>
      hop.latency && direct.latency ? `+${(hop.latency[q] - direct.latency[q]).toFixed(2)} ms` : "-";
    lines.push(
      `through the gateway vs direct to the runtime: ${(hop.reqPerSec / direct.reqPerSec).toFixed(2)}x req/s` +
        ` (both on the servers' CPU), ${added("p50Ms")} at p50, ${added("p99Ms")} at p99; gateway RSS ${fixed(hop.rssMb, 1)} MB`,
    );
  }
  const proxy = result.servers.find((s) => s.server === "node:http2 proxy -> runtime" && s.status === "ok");
  if (proxy?.reqPerSec && direct?.reqPerSec) {
    lines.push(
      `through a bare node:http2 proxy vs direct: ${(proxy.reqPerSec / direct.reqPerSec).toFixed(2)}x req/s` +
        " (the ceiling of a gateway on Node's HTTP/2 stack" +
        (hop?.reqPerSec
          ? `; the gateway reaches ${(hop.reqPerSec / proxy.reqPerSec).toFixed(2)}x of it)`
          : ")"),
    );
  }
  if (hop && proxy) lines.push(...gatewayVsProxy(hop, proxy));
  const traced = result.servers.find((s) => s.server === "runtime + OTLP traces" && s.status === "ok");
  if (traced && direct) lines.push(...tracedVsUntraced(traced, direct));
  const withGc = result.servers.flatMap((s) =>
    s.status === "ok" && s.latency?.gc
      ? [{ server: s.server, rounds: s.latencyRounds, ...s.latency.gc }]
      : [],
  );
  if (withGc.length > 0) {
    lines.push("GC pauses of each server process in its reported latency run (and p99 of every round):");
    for (const { server, major, minor, rounds } of withGc) {
      const perRound =
        rounds && rounds.length > 1
          ? `; p99 by round ${rounds
              .map(
                (r) =>
                  `${r.p99Ms.toFixed(1)} ms` +
                  (r.gc && r.gc.major.count > 0 ? ` (full GC up to ${r.gc.major.maxMs.toFixed(0)} ms)` : ""),
              )
              .join(", ")}`
          : "";
      lines.push(
        `  ${server}: ${major.count} full (mark-compact)${major.count > 0 ? `, longest ${major.maxMs.toFixed(1)} ms` : ""};` +
          ` ${minor.count} scavenges, ${minor.totalMs.toFixed(0)} ms in all, longest ${minor.maxMs.toFixed(1)} ms${perRound}`,
      );
    }
  }
  for (const s of result.servers) for (const note of s.notes) lines.push(`note: ${s.server}: ${note}`);
  return lines.join("\n");
}

/** Writes `report` as indented JSON to `path`, creating its directory. */
export async function writeReport(path: string, report: BenchReport): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
}

/** The median of `values` (the mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** `a[i] / b[i]` for each round both measured, to two decimals. */
function perRound(a: readonly number[] | undefined, b: readonly number[] | undefined): string {
  if (!a || !b) return "-";
  const n = Math.min(a.length, b.length);
  const ratios: number[] = [];
  for (let i = 0; i < n; i++) ratios.push((a[i] as number) / (b[i] as number));
  return ratios.length === 0
    ? "-"
    : `${ratios.map((r) => r.toFixed(2)).join(", ")} (median ${median(ratios).toFixed(2)})`;
}

/**
 * Issue 15.8's ratios, the runtime exporting a span per call over OTLP to the embedded receiver
 * over the runtime with tracing off, round by round; and what the receiver cost besides (it runs
 * in the bench's own process, on the load generator's CPU).
 */
function tracedVsUntraced(traced: ServerResult, direct: ServerResult): string[] {
  const receiver = traced.benchCpuUsPerCallRounds;
  const idle = direct.benchCpuUsPerCallRounds;
  return [
    "runtime + OTLP traces / runtime, by round (issue 15.8, goal >= 0.85x req/s):",
    `  req/s ${perRound(traced.reqPerSecRounds, direct.reqPerSecRounds)}`,
    `  server CPU us/call ${perRound(traced.cpuUsPerCallRounds, direct.cpuUsPerCallRounds)}`,
    ...(receiver && idle
      ? [
          `  bench process CPU us/call (the receiver in the traced rows): ${receiver.map((r) => r.toFixed(1)).join(", ")}` +
            ` against ${idle.map((r) => r.toFixed(1)).join(", ")} untraced`,
        ]
      : []),
  ];
}

/**
 * Issue 23's ratios, gateway over the bare proxy, round by round (the rounds alternate, so each
 * pair ran seconds apart): throughput, CPU per call and p99 at the latency rate.
 */
function gatewayVsProxy(hop: ServerResult, proxy: ServerResult): string[] {
  return [
    "gateway / bare proxy, by round:",
    `  req/s ${perRound(hop.reqPerSecRounds, proxy.reqPerSecRounds)}`,
    `  CPU us/call ${perRound(hop.cpuUsPerCallRounds, proxy.cpuUsPerCallRounds)}`,
    `  p99 ${perRound(hop.p99Rounds, proxy.p99Rounds)}`,
  ];
}
