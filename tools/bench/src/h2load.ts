/**
 * Running h2load (nghttp2's HTTP/2 load generator) and reading its results: the summary it
 * prints, and the per-request latencies of its `--log-file`, from which p50/p99 are computed
 * (h2load itself prints only min/max/mean/sd).
 */
import { execFile, spawn } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Request counts of one h2load run (main phase only when timing-based). */
export interface H2loadRequests {
  total: number;
  started: number;
  done: number;
  /** Completed with an HTTP/2 stream close; says nothing about the gRPC status. */
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
}

/** `min`/`max`/`mean`/`sd` of a h2load timing line, in milliseconds. */
export interface H2loadTiming {
  minMs: number;
  maxMs: number;
  meanMs: number;
  sdMs: number;
}

/** What h2load prints at the end of a run. */
export interface H2loadSummary {
  /** `finished in` (wall time including any warm-up), seconds. */
  finishedInS: number;
  /** Completed requests per second of the measured phase, as h2load computes it. */
  reqPerSec: number;
  requests: H2loadRequests;
  /** HTTP status classes: `2xx`, `3xx`, `4xx`, `5xx`. */
  status: Record<"2xx" | "3xx" | "4xx" | "5xx", number>;
  /** Bytes received: all, header blocks (decompressed size not counted), DATA payload. */
  traffic: { totalBytes: number; headerBytes: number; dataBytes: number };
  /** `time for request` (request sent to stream closed). */
  timeForRequest: H2loadTiming;
}

/** Parses a h2load duration such as `143.55ms`, `356us`, `1.2s` into milliseconds. */
export function parseH2loadDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m?.[1] || !m[2]) throw new Error(`not a h2load duration: ${JSON.stringify(text)}`);
  const value = Number(m[1]);
  const scale: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return value * (scale[m[2]] ?? Number.NaN);
}

function match(text: string, re: RegExp, what: string): RegExpExecArray {
  const m = re.exec(text);
  if (!m) throw new Error(`h2load output has no ${what} line`);
  return m;
}

function num(value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n)) throw new Error(`not a number: ${value}`);
  return n;
}

/**
 * Parses the summary h2load prints at the end of a run (nghttp2 1.4x to 1.6x formats: traffic as
 * `9.74MB (10216555) total` or as `10216555 bytes total`). Throws when a required line is missing,
 * e.g. when h2load failed to connect and printed only an error.
 */
export function parseH2loadOutput(output: string): H2loadSummary {
  const finished = match(output, /^finished in ([\d.]+\w+), ([\d.]+) req\/s/m, "`finished in`");
  const req = match(
    output,
    /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m,
    "`requests:`",
  );
  const status = match(
    output,
    /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m,
    "`status codes:`",
  );
  // "traffic: 9.74MB (10216555) total, 324.14KB (331920) headers (...), 8.95MB (9389440) data"
  // or, in older releases, "traffic: 10216555 bytes total, 331920 bytes headers (...), 9389440 bytes data".
  const traffic =
    /^traffic: \S+ \((\d+)\) total, \S+ \((\d+)\) headers.*?, \S+ \((\d+)\) data/m.exec(output) ??
    match(output, /^traffic: (\d+) bytes total, (\d+) bytes headers.*?, (\d+) bytes data/m, "`traffic:`");
  const timing = match(
    output,
    /^time for request:\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)/m,
    "`time for request:`",
  );
  return {
    finishedInS: parseH2loadDuration(finished[1] ?? "") / 1000,
    reqPerSec: num(finished[2]),
    requests: {
      total: num(req[1]),
      started: num(req[2]),
      done: num(req[3]),
      succeeded: num(req[4]),
      failed: num(req[5]),
      errored: num(req[6]),
      timeout: num(req[7]),
    },
    status: { "2xx": num(status[1]), "3xx": num(status[2]), "4xx": num(status[3]), "5xx": num(status[4]) },
    traffic: { totalBytes: num(traffic[1]), headerBytes: num(traffic[2]), dataBytes: num(traffic[3]) },
    timeForRequest: {
      minMs: parseH2loadDuration(timing[1] ?? ""),
      maxMs: parseH2loadDuration(timing[2] ?? ""),
      meanMs: parseH2loadDuration(timing[3] ?? ""),
      sdMs: parseH2loadDuration(timing[4] ?? ""),
    },
  };
}

/** One line of h2load's `--log-file`. */
export interface H2loadLogEntry {
  /** When the request was sent, microseconds since the epoch. */
  startUs: number;
  /** HTTP status, `-1` for a failed stream (h2load 1.52 writes `0` for an unrecorded status). */
  status: number;
  /** Request sent to stream closed, microseconds. */
  latencyUs: number;
}

/** Parses h2load's `--log-file` (tab-separated: start µs since epoch, status, latency µs). */
export function parseLatencyLog(text: string): H2loadLogEntry[] {
  const entries: H2loadLogEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const [start, status, latency] = line.split("\t");
    const entry = { startUs: Number(start), status: Number(status), latencyUs: Number(latency) };
    if (
      !Number.isFinite(entry.startUs) ||
      !Number.isFinite(entry.status) ||
      !Number.isFinite(entry.latencyUs)
    ) {
      throw new Error(`malformed h2load log line: ${JSON.stringify(line)}`);
    }
    entries.push(entry);
  }
  return entries;
}

/** The value at quantile `q` (0..1) of ascending `sorted`, by the nearest-rank method. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/** Latency percentiles of a run, in milliseconds, over the requests that were kept. */
export interface LatencySummary {
  /** Requests measured (successful, after the skipped start). */
  count: number;
  /** Failed streams (status `-1`) among the entries considered. */
  failed: number;
  /** Requests per second completed over the kept window (first sent to last completed). */
  achievedRate: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/**
 * Summarises log entries: drops those sent in the first `skipMs` of the run (connections being
 * opened, the server settling), then takes the percentiles of the successful ones.
 */
export function summarizeLatencies(entries: readonly H2loadLogEntry[], skipMs = 0): LatencySummary {
  let first = Number.POSITIVE_INFINITY;
  for (const e of entries) first = Math.min(first, e.startUs);
  const kept = entries.filter((e) => e.startUs >= first + skipMs * 1000);
  const ok = kept.filter((e) => e.status !== -1);
  const latencies = ok.map((e) => e.latencyUs / 1000).sort((a, b) => a - b);
  // Completed requests over the kept window, first send to last completion: the rate asked for
  // when the server keeps up, its throughput when it does not.
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const e of kept) {
    lo = Math.min(lo, e.startUs);
    hi = Math.max(hi, e.startUs + e.latencyUs);
  }
  const spanS = (hi - lo) / 1e6;
  return {
    count: latencies.length,
    failed: kept.length - ok.length,
    achievedRate: spanS > 0 ? kept.length / spanS : Number.NaN,
    p50Ms: percentile(latencies, 0.5),
    p90Ms: percentile(latencies, 0.9),
    p99Ms: percentile(latencies, 0.99),
    p999Ms: percentile(latencies, 0.999),
    maxMs: latencies.length > 0 ? (latencies[latencies.length - 1] as number) : Number.NaN,
  };
}

/**
 * How many of a run's HTTP-successful answers carried no gRPC message, estimated from the DATA
 * bytes received: h2load sees only the HTTP status, but a gRPC error is a trailers-only answer
 * with no DATA, while every successful answer carries `answerBytes` (the framed message). Exact
 * for runs sized by request count; a timing-based run also counts the bytes of the answers still
 * in flight when it stops, so there it is a lower bound. Warm-up bytes count too: warm up in a
 * separate run.
 */
export function answersWithoutMessage(summary: H2loadSummary, answerBytes: number): number {
  if (answerBytes <= 0) return 0;
  const missing = summary.requests.succeeded * answerBytes - summary.traffic.dataBytes;
  return missing > 0 ? Math.ceil(missing / answerBytes) : 0;
}

/** How to find or get h2load. */
export interface H2loadInstall {
  /** Print progress and hints. */
  log(line: string): void;
  /** Install with apt-get when missing and running as root. Default true. */
  install?: boolean;
}

async function h2loadVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync("h2load", ["--version"]);
    return stdout.trim();
  } catch {
    return undefined;
  }
}

/**
 * Returns h2load's version string (`h2load nghttp2/1.52.0`), installing the Debian package
 * `nghttp2-client` first when it is missing, apt-get exists and this process is root. Returns
 * `undefined` when h2load cannot be had.
 */
export async function ensureH2load(options: H2loadInstall): Promise<string | undefined> {
  const found = await h2loadVersion();
  if (found) return found;
  options.log("h2load not found: apt-get install -y nghttp2-client");
  const root = process.getuid?.() === 0;
  let aptGet = false;
  try {
    await execFileAsync("apt-get", ["--version"]);
    aptGet = true;
  } catch {
    aptGet = false;
  }
  if (!(options.install ?? true) || !root || !aptGet) return undefined;
  options.log("installing nghttp2-client with apt-get (running as root)...");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  try {
    await execFileAsync("apt-get", ["update", "-qq"], { env, maxBuffer: 64 * 1024 * 1024 });
    await execFileAsync("apt-get", ["install", "-y", "-qq", "nghttp2-client"], {
      env,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    options.log(`apt-get failed: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
  return h2loadVersion();
}

/** Options common to both kinds of run. */
interface RunBase {
  /** Full URL of the method, e.g. `http://127.0.0.1:4000/pkg.Service/Method`. */
  url: string;
  /** File with the request body (the framed gRPC message); empty: none (GET requests). */
  bodyFile: string;
  /**
   * A file of URIs, one a line, used in turn instead of `url` (`-i`): GET requests that differ
   * in their query (Connect GET, the message in the URL), so each request can name another key.
   */
  inputFile?: string;
  /** Extra request headers, `name: value`. */
  headers: readonly string[];
  /** Prefix the command with, e.g. `["taskset", "-c", "1"]`. */
  wrapper?: readonly string[];
  /** Max concurrent streams per connection (`-m`). */
  streams: number;
}

/** A closed-loop, timing-based run at the highest rate the server sustains. */
export interface MaxRateRun extends RunBase {
  clients: number;
  durationMs: number;
  warmUpMs: number;
}

/**
 * A fixed-rate run. h2load's `--rps` sends each client's requests in bursts every 10 ms (its
 * timer's floor), so the connections are opened 1 ms apart (`-r 1 --rate-period=1ms`) and the
 * bursts of different connections interleave: the server sees `rate/1000` requests every
 * millisecond instead of `rate/100` every ten. `-r` excludes `-D`, so the run is sized by
 * request count (`rate × duration`).
 */
export interface FixedRateRun extends RunBase {
  clients: number;
  /** Total requests per second over all clients. */
  rate: number;
  /** Total requests over all clients (`rate × duration` for a run of that duration). */
  requests: number;
  /** Where h2load writes per-request latencies; removed first (h2load appends). */
  logFile: string;
}

/** The result of a h2load run: its parsed summary and the raw output. */
export interface H2loadResult {
  summary: H2loadSummary;
  output: string;
  args: string[];
}

/** Arguments of a max-rate run (exported for the tests). */
export function maxRateArgs(run: MaxRateRun): string[] {
  return [
    "-t",
    "1",
    "-c",
    String(run.clients),
    "-m",
    String(run.streams),
    "-D",
    `${Math.max(1, Math.round(run.durationMs))}ms`,
    ...(run.warmUpMs > 0 ? [`--warm-up-time=${Math.round(run.warmUpMs)}ms`] : []),
    ...(run.bodyFile ? ["-d", run.bodyFile] : []),
    ...run.headers.flatMap((h) => ["-H", h]),
    ...(run.inputFile ? ["-i", run.inputFile] : [run.url]),
  ];
}

/** Arguments of a fixed-rate run (exported for the tests). */
export function fixedRateArgs(run: FixedRateRun): string[] {
  const total = Math.max(run.clients, Math.round(run.requests));
  const perClient = run.rate / run.clients;
  return [
    "-t",
    "1",
    "-c",
    String(run.clients),
    "-r",
    "1",
    "--rate-period=1ms",
    "-m",
    String(run.streams),
    "-n",
    String(total),
    `--rps=${perClient.toFixed(3)}`,
    `--log-file=${run.logFile}`,
    ...(run.bodyFile ? ["-d", run.bodyFile] : []),
    ...run.headers.flatMap((h) => ["-H", h]),
    ...(run.inputFile ? ["-i", run.inputFile] : [run.url]),
  ];
}

async function runH2load(args: string[], wrapper: readonly string[] | undefined): Promise<H2loadResult> {
  const [command, ...rest] = [...(wrapper ?? []), "h2load", ...args];
  const child = spawn(command as string, rest, { stdio: ["ignore", "pipe", "pipe"] });
  const chunks: Buffer[] = [];
  child.stdout.on("data", (c: Buffer) => chunks.push(c));
  child.stderr.on("data", (c: Buffer) => chunks.push(c));
  // "close", not "exit": a process can exit before its stdout is read to the end, and then the
  // summary (the last lines) is missing from what was collected (seen with 8 h2loads at once).
  const code = await new Promise<number | string>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (c, s) => resolve(c ?? s ?? -1));
  });
  const output = Buffer.concat(chunks).toString("utf8");
  if (code !== 0) throw new Error(`h2load exited with ${code}:\n${output.slice(-2000)}`);
  try {
    return { summary: parseH2loadOutput(output), output, args };
  } catch (err) {
    throw new Error(`${(err as Error).message}; h2load ${args.join(" ")} said:\n${output.slice(-2000)}`);
  }
}

/** Runs h2load flat out for `durationMs` after `warmUpMs` of warm-up. */
export function runMaxRate(run: MaxRateRun): Promise<H2loadResult> {
  return runH2load(maxRateArgs(run), run.wrapper);
}

/** Runs h2load at a fixed rate and summarises the per-request latencies of its log. */
export async function runFixedRate(
  run: FixedRateRun,
  skipMs: number,
): Promise<H2loadResult & { latency: LatencySummary }> {
  await rm(run.logFile, { force: true });
  const result = await runH2load(fixedRateArgs(run), run.wrapper);
  const entries = parseLatencyLog(await readFile(run.logFile, "utf8"));
  return { ...result, latency: summarizeLatencies(entries, skipMs) };
}
