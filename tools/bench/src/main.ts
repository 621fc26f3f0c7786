/**
 * `npm run bench`: for each scenario, starts each server as its own process (pinned to CPU 0),
 * drives it with h2load (pinned to CPU 1): first flat out for the max rate, then at a fixed rate
 * (half the baseline's max) for latency percentiles. Prints a table per scenario and writes all
 * results to `.bench/results.json`.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  type ClientProtocolResult,
  formatExtras,
  measureClientProtocols,
  measureStreamMemory,
  type StreamMemoryResult,
} from "./extras.js";
import { summarizeGc } from "./fixtures/fixture-process.js";
import { rawGrpcUnary } from "./grpc-client.js";
import { answersWithoutMessage, ensureH2load, runFixedRate, runMaxRate } from "./h2load.js";
import {
  type BenchReport,
  describeWithoutMessage,
  errorsBetween,
  formatScenario,
  type LatencyResult,
  median,
  renderTable,
  type ScenarioResult,
  type ServerResult,
  sumErrors,
  withRatios,
  writeReport,
} from "./report.js";
import { type PreparedRequest, type Scenario, scenarios } from "./scenarios.js";
import {
  grpcJsFixture,
  http2EchoFixture,
  type RunningServer,
  readCpuTicks,
  repoRoot,
  runtimeFixture,
  type ServerSpec,
  type StartContext,
  stopAllServers,
  waitForQuiet,
} from "./servers.js";
import { type BenchSettings, callsInFlightOf, readSettings } from "./settings.js";

/** The headers h2load sends with every request (besides its own `user-agent` and `content-length`). */
const GRPC_HEADERS = { "content-type": "application/grpc", te: "trailers" } as const;

const log = (line: string) => console.log(line);

/** The machine's CPUs, read before this process pins itself (then it would read 1). */
const machineCpus = availableParallelism();

/** Where servers and h2load run. */
interface Placement {
  serverCpu: number | undefined;
  loadCpu: number | undefined;
}

async function placement(): Promise<Placement> {
  if (machineCpus < 2) {
    log("note: fewer than 2 CPUs: servers and h2load are not pinned");
    return { serverCpu: undefined, loadCpu: undefined };
  }
  try {
    await promisify(execFile)("taskset", ["-c", "0", "true"]);
    // This process too (every thread): it supervises the runs and, in the traced row, is the
    // embedded trace receiver, like the collector of a deployment, off the server's core. Left
    // unpinned it ran on CPU 0 beside the server now and then, and the traced row's figure
    // swung with where the scheduler put it (0.75-0.86x in quiet runs of the same code).
    await promisify(execFile)("taskset", ["-a", "-p", "-c", "1", String(process.pid)]);
    return { serverCpu: 0, loadCpu: 1 };
  } catch {
    log("note: taskset not usable (apt-get install -y util-linux): servers and h2load are not pinned");
    return { serverCpu: undefined, loadCpu: undefined };
  }
}

/** Everything a measurement needs besides the server. */
interface Run {
  settings: BenchSettings;
  placement: Placement;
  workDir: string;
}

/** Replays h2load's request once and throws unless it gets grpc-status 0 and the right answer. */
async function verify(server: RunningServer, scenario: Scenario, request: PreparedRequest, when: string) {
  const answer = await rawGrpcUnary(`${server.url}${scenario.path}`, request.body, {
    ...GRPC_HEADERS,
    ...request.headers,
    "user-agent": "h2load",
  });
  try {
    request.check(answer);
  } catch (err) {
    throw new Error(`verification ${when} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  return answer;
}

/** One started server, ready to be measured: its request written to h2load's body file. */
interface Target {
  server: RunningServer;
  request: PreparedRequest;
  /** The options every h2load run against this server shares. */
  common: {
    url: string;
    bodyFile: string;
    headers: string[];
    wrapper: string[] | undefined;
    streams: number;
  };
  /** Prefix of this server's files in the work directory. */
  slug: string;
  /** Size of the verified answer's body (framed message), bytes. */
  answerBytes: number;
}

async function prepareTarget(
  run: Run,
  scenario: Scenario,
  spec: ServerSpec,
  server: RunningServer,
): Promise<Target> {
  const request = await scenario.prepare(server, spec);
  const slug = spec.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  const bodyFile = join(run.workDir, `${slug}.body`);
  await writeFile(bodyFile, request.body);
  const { loadCpu } = run.placement;
  return {
    server,
    request,
    slug,
    answerBytes: 0,
    common: {
      url: `${server.url}${scenario.path}`,
      bodyFile,
      // A getter: the request's headers may change during a run (a fresh identity assertion).
      get headers() {
        return Object.entries({ ...GRPC_HEADERS, ...request.headers }).map(([k, v]) => `${k}: ${v}`);
      },
      wrapper: loadCpu === undefined ? undefined : ["taskset", "-c", String(loadCpu)],
      streams: run.settings.streams,
    },
  };
}

/**
 * Measures the max rate once (after a separate warm-up run), records the run's
 * counts in `result` and returns the rate.
 */
async function measureMaxRate(
  run: Run,
  scenario: Scenario,
  target: Target,
  result: ServerResult,
  round: string,
): Promise<number> {
  const { settings } = run;
  const answer = await verify(target.server, scenario, target.request, "before the max-rate run");
  target.answerBytes = answer.body.byteLength;
  const flatOut = { ...target.common, clients: settings.clients, warmUpMs: 0 };
  // Before every round: an idle V8 shrinks its heap and drops compiled code meanwhile.
  if (settings.warmUpMs > 0) {
    log(`  ${target.server.name}: warm-up ${settings.warmUpMs / 1000}s ...`);
    await runMaxRate({ ...flatOut, durationMs: settings.warmUpMs });
  }
  const outcomesBefore = await outcomes(target.server);
  const ticksBefore = await readCpuTicks(target.server.pid);
  const ownBefore = process.cpuUsage();
  const { summary: s } = await runMaxRate({ ...flatOut, durationMs: settings.durationMs });
  const own = process.cpuUsage(ownBefore);
  const ticksAfter = await readCpuTicks(target.server.pid);
  const errors = errorsBetween(outcomesBefore, await outcomes(target.server));
  let cpu = "";
  if (ticksBefore !== undefined && ticksAfter !== undefined && s.requests.succeeded > 0) {
    // Clock ticks are 10 ms on Linux.
    const us = ((ticksAfter - ticksBefore) * 10_000) / s.requests.succeeded;
    result.cpuUsPerCallRounds = [...(result.cpuUsPerCallRounds ?? []), us];
    cpu = `, ${us.toFixed(1)} us CPU per call`;
    // The bench's own process: h2load's supervisor, and the traced row's trace receiver.
    const ownUs = (own.user + own.system) / s.requests.succeeded;
    result.benchCpuUsPerCallRounds = [...(result.benchCpuUsPerCallRounds ?? []), ownUs];
    cpu += ` (+${ownUs.toFixed(1)} us in the bench's process)`;
  }
  const non2xx = s.status["3xx"] + s.status["4xx"] + s.status["5xx"];
  const withoutMessage = answersWithoutMessage(s, target.answerBytes);
  result.maxRun = {
    requests: s.requests.done,
    succeeded: s.requests.succeeded,
    failed: s.requests.failed,
    errored: s.requests.errored,
    timeout: s.requests.timeout,
    non2xx,
    withoutMessage,
    ...(errors ? { errors } : {}),
  };
  log(
    `  ${target.server.name}: max rate ${round}: ${s.reqPerSec.toFixed(0)} req/s${cpu} (${s.requests.done} requests, ${s.requests.failed} failed)`,
  );
  if (s.requests.failed > 0 || non2xx > 0) {
    result.notes.push(
      `max-rate run ${round}: ${s.requests.failed} failed requests, ${non2xx} non-2xx answers`,
    );
  }
  if (withoutMessage > 0) {
    result.notes.push(`max-rate run ${round}: at least ${describeWithoutMessage(withoutMessage, errors)}`);
  }
  return s.reqPerSec;
}

/**
 * Measures latency at `rate` req/s. A server slower than the rate is driven at its own max for
 * the same duration (rather than queueing requests for minutes) and reported as saturated.
 */
async function measureLatency(
  run: Run,
  scenario: Scenario,
  target: Target,
  rate: number,
  maxRate: number,
  label: string,
): Promise<LatencyResult> {
  const { settings } = run;
  await verify(target.server, scenario, target.request, `before the fixed-rate run (${label})`);
  const sustainable = Math.min(rate, maxRate);
  log(`  latency (${label}): ${Math.round(rate)} req/s for ${settings.durationMs / 1000}s ...`);
  // The pauses so far are not this run's: the first report resets them.
  await gcReport(target.server);
  const skipMs = Math.min(1000, settings.durationMs / 10);
  const startedAt = Date.now();
  const outcomesBefore = await outcomes(target.server);
  const ticksBefore = await readCpuTicks(target.server.pid);
  const { latency: l, summary } = await runFixedRate(
    {
      ...target.common,
      clients: settings.latencyClients,
      rate,
      requests: Math.round((sustainable * settings.durationMs) / 1000),
      logFile: join(run.workDir, `${target.slug}.log`),
    },
    skipMs,
  );
  const ticksAfter = await readCpuTicks(target.server.pid);
  const errors = errorsBetween(outcomesBefore, await outcomes(target.server));
  const report = await gcReport(target.server);
  // CPU per call at a rate both servers of a pair sustain: unlike the max-rate figure, it does
  // not move with throughput (a slower server batches fewer calls per event-loop turn, so each
  // costs more), which is what a traced/untraced comparison on a loaded machine needs.
  const cpuUsPerCall =
    ticksBefore !== undefined && ticksAfter !== undefined && summary.requests.succeeded > 0
      ? ((ticksAfter - ticksBefore) * 10_000) / summary.requests.succeeded
      : undefined;
  // Only the pauses in the window the latencies were taken from (the first `skipMs` are left out).
  const gc = report && summarizeGc(report.pauses, startedAt + skipMs);
  const saturated = l.achievedRate < rate * 0.95;
  const withoutMessage = answersWithoutMessage(summary, target.answerBytes);
  log(
    `  latency (${label}): p50 ${l.p50Ms.toFixed(2)} ms, p99 ${l.p99Ms.toFixed(2)} ms at ${l.achievedRate.toFixed(0)} req/s` +
      (cpuUsPerCall === undefined ? "" : `, ${cpuUsPerCall.toFixed(1)} us CPU per call`) +
      (saturated ? " (saturated)" : ""),
  );
  return {
    targetRate: rate,
    achievedRate: l.achievedRate,
    saturated,
    count: l.count,
    failed: l.failed,
    withoutMessage,
    ...(errors ? { errors } : {}),
    p50Ms: l.p50Ms,
    p90Ms: l.p90Ms,
    p99Ms: l.p99Ms,
    p999Ms: l.p999Ms,
    maxMs: l.maxMs,
    ...(cpuUsPerCall === undefined ? {} : { cpuUsPerCall }),
    ...(gc ? { gc } : {}),
  };
}

/** The server's calls by outcome so far, or `undefined` (it counts none, or no answer). */
async function outcomes(server: RunningServer): Promise<Record<string, number> | undefined> {
  try {
    return await server.outcomes?.();
  } catch (err) {
    log(`  note: ${server.name}: no outcome counts (${err instanceof Error ? err.message : String(err)})`);
    return undefined;
  }
}

/** The server's GC pauses since its last report, or `undefined` (not a fixture, or no answer). */
async function gcReport(server: RunningServer) {
  try {
    return await server.gcReport();
  } catch (err) {
    log(`  note: ${server.name}: no GC report (${err instanceof Error ? err.message : String(err)})`);
    return undefined;
  }
}

function describeLatency(l: LatencyResult): string {
  return `p50 ${l.p50Ms.toFixed(2)} ms, p99 ${l.p99Ms.toFixed(2)} ms at ${Math.round(l.achievedRate)} req/s`;
}

async function runScenario(run: Run, scenario: Scenario): Promise<ScenarioResult> {
  const { settings } = run;
  log(`\n== ${scenario.name} (${scenario.path}) ==`);
  const selected = scenario.servers.filter(
    (s) => !settings.servers || settings.servers.some((f) => s.name.toLowerCase().includes(f)),
  );
  // The baseline runs first: its max rate sets everyone's latency rate.
  const order = [...selected].sort(
    (a, b) => Number(b.name === scenario.baseline) - Number(a.name === scenario.baseline),
  );
  const results = new Map<string, ServerResult>();
  // The server whose max sets the latency rate: the scenario's choice when it runs, else the baseline.
  const rateFrom =
    scenario.latencyRateFrom && selected.some((s) => s.name === scenario.latencyRateFrom)
      ? scenario.latencyRateFrom
      : scenario.baseline;
  let rateFromMax: number | undefined;
  const latencyRate = (): { rate: number | undefined; source: string } => {
    if (settings.rate !== undefined) return { rate: settings.rate, source: "MESHWORK_BENCH_RATE" };
    if (rateFromMax !== undefined && rateFromMax >= 2) {
      return { rate: Math.floor(rateFromMax / 2), source: `half of ${rateFrom}'s max` };
    }
    return { rate: undefined, source: `${rateFrom} was not measured; set MESHWORK_BENCH_RATE` };
  };
  const context: StartContext = {
    cpu: run.placement.serverCpu,
    log,
    callsInFlight: callsInFlightOf(settings),
  };
  const fail = (result: ServerResult, err: unknown) => {
    result.status = "failed";
    const message = err instanceof Error ? err.message : String(err);
    result.notes.push(message);
    log(`  ${result.server}: failed: ${message}`);
  };

  // Every server of the scenario runs side by side (idle while another is measured).
  const targets = new Map<string, Target>();
  try {
    for (const spec of order) {
      const result: ServerResult = {
        server: spec.name,
        description: spec.description,
        status: "ok",
        notes: [],
      };
      results.set(spec.name, result);
      log(`- ${spec.name}`);
      const why = await spec.unavailable();
      if (why) {
        result.status = "skipped";
        result.notes.push(why);
        log(`  skipped: ${why}`);
        continue;
      }
      let server: RunningServer | undefined;
      try {
        server = await spec.start(context);
        log(`  started: pid ${server.pid}, ${server.url}`);
        targets.set(spec.name, await prepareTarget(run, scenario, spec, server));
      } catch (err) {
        fail(result, err);
        await server?.stop();
      }
    }

    const quiet = async () => {
      const pids = [...targets.values()].map((t) => t.server.pid);
      if (!(await waitForQuiet(pids))) log("  note: a server stayed busy between runs");
    };
    // Max rate in rounds, alternating the order, so the machine's slow spells spread evenly.
    const rounds = new Map<string, number[]>();
    for (let round = 0; round < settings.rounds; round++) {
      const names = [...targets.keys()];
      if (round % 2 === 1) names.reverse();
      for (const name of names) {
        const result = results.get(name) as ServerResult;
        if (result.status !== "ok") continue;
        try {
          await quiet();
          const rate = await measureMaxRate(
            run,
            scenario,
            targets.get(name) as Target,
            result,
            `${round + 1}/${settings.rounds}`,
          );
          rounds.set(name, [...(rounds.get(name) ?? []), rate]);
        } catch (err) {
          fail(result, err);
        }
      }
    }
    for (const [name, rates] of rounds) {
      const result = results.get(name) as ServerResult;
      result.reqPerSecRounds = rates;
      result.reqPerSec = median(rates);
      if (result.cpuUsPerCallRounds?.length) result.cpuUsPerCall = median(result.cpuUsPerCallRounds);
      if (name === rateFrom) rateFromMax = result.reqPerSec;
    }

    // Latency at the fixed rate, in alternating rounds too: a p99 is mostly a few GC pauses, so
    // one run says little; the round with the median p99 is reported.
    const { rate, source } = latencyRate();
    const latencies = new Map<string, LatencyResult[]>();
    for (let round = 0; rate !== undefined && round < settings.rounds; round++) {
      const names = [...targets.keys()];
      if (round % 2 === 1) names.reverse();
      for (const name of names) {
        const result = results.get(name) as ServerResult;
        if (result.status !== "ok") continue;
        const target = targets.get(name) as Target;
        try {
          log(`- ${name}: latency round ${round + 1}/${settings.rounds}`);
          await quiet();
          if (settings.warmUpMs > 0) {
            await runMaxRate({
              ...target.common,
              clients: settings.clients,
              warmUpMs: 0,
              durationMs: settings.warmUpMs,
            });
          }
          const latency = await measureLatency(
            run,
            scenario,
            target,
            rate,
            result.reqPerSec ?? 0,
            "fixed rate",
          );
          latencies.set(name, [...(latencies.get(name) ?? []), latency]);
        } catch (err) {
          fail(result, err);
        }
      }
    }
    for (const [name, target] of targets) {
      const result = results.get(name) as ServerResult;
      if (result.status !== "ok") continue;
      try {
        const maxRate = result.reqPerSec ?? 0;
        const runs = latencies.get(name) ?? [];
        if (rate === undefined || runs.length === 0) {
          result.notes.push(`latency not measured: ${source}`);
        } else {
          const byP99 = [...runs].sort((a, b) => a.p99Ms - b.p99Ms);
          const latency = byP99[Math.floor((byP99.length - 1) / 2)] as LatencyResult;
          result.latency = latency;
          result.p99Rounds = runs.map((r) => r.p99Ms);
          result.latencyRounds = runs;
          const failed = runs.reduce((n, r) => n + r.failed, 0);
          const withoutMessage = runs.reduce((n, r) => n + r.withoutMessage, 0);
          if (failed > 0) result.notes.push(`fixed-rate runs: ${failed} failed requests`);
          if (withoutMessage > 0) {
            const errors = sumErrors(runs.map((r) => r.errors));
            result.notes.push(`fixed-rate runs: ${describeWithoutMessage(withoutMessage, errors)}`);
          }
          if (latency.saturated && maxRate >= 2) {
            // Queueing numbers say little about the server: also measure it at half its own max.
            await quiet();
            const own = await measureLatency(
              run,
              scenario,
              target,
              Math.floor(maxRate / 2),
              maxRate,
              "half own max",
            );
            result.latencyAtHalfOwnMax = own;
            result.notes.push(
              `could not sustain ${Math.round(rate)} req/s (achieved ${Math.round(latency.achievedRate)}): ` +
                `its latency there is queueing; at half its own max: ${describeLatency(own)}`,
            );
          }
        }
        await verify(target.server, scenario, target.request, "after the runs");
        result.rssMb = await target.server.rssMb();
      } catch (err) {
        fail(result, err);
      }
    }
  } finally {
    await Promise.all([...targets.values()].map((t) => t.server.stop()));
  }
  const rate = latencyRate();
  return withRatios({
    scenario: scenario.name,
    method: scenario.path,
    baseline: scenario.baseline,
    latencyRate: rate.rate,
    latencyRateSource: rate.source,
    servers: selected.map((s) => results.get(s.name) as ServerResult),
  });
}

async function main(): Promise<number> {
  const startedAt = new Date();
  const settings = readSettings();
  const h2load = await ensureH2load({ log });
  if (!h2load) {
    log("cannot run the bench without h2load");
    return 1;
  }
  const where = await placement();
  const workDir = await mkdtemp(join(tmpdir(), "meshwork-bench-"));
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: stopping servers`);
    void stopAllServers().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const results: ScenarioResult[] = [];
  let clientProtocols: ClientProtocolResult[] = [];
  const streamMemory: StreamMemoryResult[] = [];
  const extrasFailed: string[] = [];
  try {
    for (const scenario of scenarios()) {
      results.push(await runScenario({ settings, placement: where, workDir }, scenario));
    }
    const context: StartContext = { cpu: where.serverCpu, log, callsInFlight: callsInFlightOf(settings) };
    const wanted = (spec: ServerSpec) =>
      !settings.servers || settings.servers.some((f) => spec.name.toLowerCase().includes(f));
    if (settings.extras && wanted(runtimeFixture())) {
      log("\n== client protocols ==");
      try {
        clientProtocols = await measureClientProtocols(runtimeFixture(), context, {
          loadCpu: where.loadCpu,
          durationMs: settings.durationMs,
          warmUpMs: settings.warmUpMs,
          rounds: settings.rounds,
        });
      } catch (err) {
        extrasFailed.push(`client protocols: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const memorySpecs = settings.extras ? [runtimeFixture(), grpcJsFixture(), http2EchoFixture()] : [];
    if (memorySpecs.length > 0) log("\n== memory per 1000 concurrent streams ==");
    for (const spec of memorySpecs.filter(wanted)) {
      try {
        const m = await measureStreamMemory(spec, context);
        log(`- ${spec.name}: ${m.perThousandMb.toFixed(2)} MB per 1k streams`);
        streamMemory.push(m);
      } catch (err) {
        extrasFailed.push(`stream memory, ${spec.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } finally {
    await stopAllServers();
    await rm(workDir, { recursive: true, force: true });
  }

  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    environment: {
      node: process.version,
      h2load,
      cpus: machineCpus,
      serverCpu: where.serverCpu ?? null,
      loadCpu: where.loadCpu ?? null,
    },
    settings: {
      durationS: settings.durationMs / 1000,
      warmUpS: settings.warmUpMs / 1000,
      clients: settings.clients,
      streams: settings.streams,
      latencyClients: settings.latencyClients,
      rounds: settings.rounds,
    },
    scenarios: results,
    clientProtocols,
    streamMemory,
  };
  log("");
  for (const r of results) log(`${formatScenario(r, report.settings)}\n`);
  log(formatExtras(clientProtocols, streamMemory, renderTable));
  for (const f of extrasFailed) log(`failed: ${f}`);
  const outFile = settings.outFile ?? join(repoRoot, ".bench", "results.json");
  await writeReport(outFile, report);
  log(`results written to ${outFile}`);
  const failed = results.flatMap((r) => r.servers).filter((s) => s.status === "failed");
  return failed.length > 0 || extrasFailed.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
