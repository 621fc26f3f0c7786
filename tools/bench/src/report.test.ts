import { describe, expect, it } from "vitest";
import { type GcPause, summarizeGc } from "./fixtures/fixture-process.js";
import {
  describeWithoutMessage,
  errorsBetween,
  formatScenario,
  type LatencyResult,
  type ScenarioResult,
  sumErrors,
  withRatios,
} from "./report.js";

const latency = (p99Ms: number, saturated = false): LatencyResult => ({
  targetRate: 1000,
  achievedRate: saturated ? 400 : 1000,
  saturated,
  count: 1000,
  failed: 0,
  withoutMessage: 0,
  p50Ms: p99Ms / 4,
  p90Ms: p99Ms / 2,
  p99Ms,
  p999Ms: p99Ms,
  maxMs: p99Ms,
});

const scenario: ScenarioResult = {
  scenario: "unary GetUser",
  method: "/meshwork.users.v1.UserService/GetUser",
  baseline: "grpc-js (in-memory)",
  latencyRate: 1000,
  latencyRateSource: "half of grpc-js (in-memory)'s max",
  servers: [
    {
      server: "slow",
      description: "",
      status: "ok",
      notes: ["queueing"],
      reqPerSec: 500,
      cpuUsPerCall: 150,
      latency: latency(40, true),
    },
    {
      server: "grpc-js (in-memory)",
      description: "",
      status: "ok",
      notes: [],
      reqPerSec: 2000,
      cpuUsPerCall: 50,
      latency: latency(2),
    },
    { server: "gone", description: "", status: "skipped", notes: ["not built"] },
  ],
};

describe("withRatios", () => {
  it("divides by the baseline's throughput, CPU per call and p99", () => {
    const [slow, base, gone] = withRatios(scenario).servers;
    expect(slow?.reqPerSecRatio).toBe(0.25);
    expect(slow?.cpuRatio).toBe(3);
    expect(slow?.p99Ratio).toBe(20);
    expect(base?.reqPerSecRatio).toBe(1);
    expect(gone?.reqPerSecRatio).toBeUndefined();
  });

  it("leaves ratios out when the baseline was not measured", () => {
    const noBase = { ...scenario, servers: scenario.servers.filter((s) => s.server !== scenario.baseline) };
    expect(withRatios(noBase).servers[0]?.reqPerSecRatio).toBeUndefined();
  });
});

describe("formatScenario", () => {
  const settings = { durationS: 10, warmUpS: 2, clients: 4, streams: 32, latencyClients: 10, rounds: 3 };

  it("prints one aligned row per server, marks saturated latencies, and lists the notes", () => {
    const text = formatScenario(withRatios(scenario), settings);
    expect(text).toContain("median of 3 rounds of 10s");
    const lines = text.split("\n");
    expect(lines[1]).toMatch(
      /^server\s+req\/s\s+vs grpc-js\s+CPU us\/call\s+CPU vs grpc-js\s+p50 ms\s+p99 ms\s+p99 vs grpc-js\s+RSS MB$/,
    );
    expect(text).toMatch(/^slow\s+500\s+0\.25x\s+150\.0\s+3\.00x\s+10\.00\*\s+40\.00\*\s+20\.00x\*\s+-$/m);
    expect(text).toMatch(/^gone\s+skipped/m);
    expect(text).toContain("note: slow: queueing");
    expect(text).toContain("note: gone: not built");
  });

  it("compares the gateway and a bare node:http2 proxy with the direct runtime", () => {
    const row = (server: string, reqPerSec: number) => ({
      server,
      description: "",
      status: "ok" as const,
      notes: [],
      reqPerSec,
      latency: latency(2),
    });
    const hops: ScenarioResult = {
      ...scenario,
      servers: [
        row("gateway -> runtime", 2000),
        row("node:http2 proxy -> runtime", 8000),
        row("runtime (in-memory)", 20000),
      ],
    };
    const text = formatScenario(withRatios(hops), settings);
    expect(text).toContain("through the gateway vs direct to the runtime: 0.10x req/s");
    expect(text).toContain(
      "through a bare node:http2 proxy vs direct: 0.40x req/s (the ceiling of a gateway on Node's HTTP/2 stack; the gateway reaches 0.25x of it)",
    );
  });

  it("gives the traced runtime's ratios to the untraced one by round, and the receiver's CPU beside them", () => {
    const row = (server: string, reqPerSecRounds: number[], cpu: number[], bench: number[]) => ({
      server,
      description: "",
      status: "ok" as const,
      notes: [],
      reqPerSec: reqPerSecRounds[1],
      reqPerSecRounds,
      cpuUsPerCallRounds: cpu,
      benchCpuUsPerCallRounds: bench,
      latency: latency(2),
    });
    const traced: ScenarioResult = {
      ...scenario,
      servers: [
        row("runtime (in-memory)", [20000, 10000, 16000], [40, 80, 50], [0.2, 0.3, 0.1]),
        row("runtime + OTLP traces", [18000, 8000, 12000], [44, 100, 55], [2.5, 3, 2]),
      ],
    };
    const text = formatScenario(withRatios(traced), settings);
    expect(text).toContain("runtime + OTLP traces / runtime, by round (issue 15.8, goal >= 0.85x req/s):");
    expect(text).toContain("  req/s 0.90, 0.80, 0.75 (median 0.80)");
    expect(text).toContain("  server CPU us/call 1.10, 1.25, 1.10 (median 1.10)");
    expect(text).toContain(
      "  bench process CPU us/call (the receiver in the traced rows): 2.5, 3.0, 2.0 against 0.2, 0.3, 0.1 untraced",
    );
    expect(formatScenario(withRatios(scenario), settings)).not.toContain("OTLP traces / runtime");
  });

  it("lists each server's GC pauses in its latency run, where the server reported them", () => {
    const withGc: ScenarioResult = {
      ...scenario,
      servers: scenario.servers.map((s) =>
        s.server === "slow" && s.latency
          ? {
              ...s,
              latency: {
                ...s.latency,
                gc: {
                  major: { count: 2, totalMs: 70.25, maxMs: 41.04 },
                  minor: { count: 80, totalMs: 412.4, maxMs: 15.26 },
                },
              },
            }
          : s,
      ),
    };
    const text = formatScenario(withRatios(withGc), settings);
    expect(text).toContain(
      "GC pauses of each server process in its reported latency run (and p99 of every round):",
    );
    expect(text).toContain(
      "  slow: 2 full (mark-compact), longest 41.0 ms; 80 scavenges, 412 ms in all, longest 15.3 ms",
    );
    // grpc-js reported none here: no line for it, and no section at all without reports.
    expect(text).not.toMatch(/^ {2}grpc-js/m);
    expect(formatScenario(withRatios(scenario), settings)).not.toContain("GC pauses");
  });

  it("gives the p99 of every latency round, with the longest full GC of the rounds that had one", () => {
    const gc = (majorMs: number[]) => ({
      major: {
        count: majorMs.length,
        totalMs: majorMs.reduce((a, b) => a + b, 0),
        maxMs: Math.max(0, ...majorMs),
      },
      minor: { count: 10, totalMs: 20, maxMs: 3 },
    });
    const rounds = [
      { ...latency(293.3), gc: gc([180.4, 20]) },
      { ...latency(16.9), gc: gc([]) },
      { ...latency(8.8), gc: gc([]) },
    ];
    const withRounds: ScenarioResult = {
      ...scenario,
      servers: [
        {
          server: "runtime (in-memory)",
          description: "",
          status: "ok",
          notes: [],
          reqPerSec: 1000,
          latency: rounds[1],
          latencyRounds: rounds,
        },
      ],
    };
    expect(formatScenario(withRatios(withRounds), settings)).toContain(
      "  runtime (in-memory): 0 full (mark-compact); 10 scavenges, 20 ms in all, longest 3.0 ms;" +
        " p99 by round 293.3 ms (full GC up to 180 ms), 16.9 ms, 8.8 ms",
    );
  });
});

describe("summarizeGc", () => {
  it("sums the pauses by kind, leaving out those that started before the window", () => {
    const pauses: GcPause[] = [
      ["major", 1_000, 90],
      ["minor", 1_500, 4],
      ["minor", 2_000, 6],
      ["major", 2_500, 40],
      ["major", 3_000, 55.5],
    ];
    expect(summarizeGc(pauses, 2_000)).toEqual({
      major: { count: 2, totalMs: 95.5, maxMs: 55.5 },
      minor: { count: 1, totalMs: 6, maxMs: 6 },
    });
    expect(summarizeGc(pauses).major.maxMs).toBe(90);
    expect(summarizeGc([], 0)).toEqual({
      major: { count: 0, totalMs: 0, maxMs: 0 },
      minor: { count: 0, totalMs: 0, maxMs: 0 },
    });
  });
});

describe("errors the server counted (issue 23: answers without a message, named)", () => {
  it("takes the outcomes other than OK that grew between two readings", () => {
    const before = { OK: 100, client_gone: 3, ResourceExhausted: 5 };
    const after = { OK: 400, client_gone: 3, ResourceExhausted: 69, DeadlineExceeded: 2 };
    expect(errorsBetween(before, after)).toEqual({ ResourceExhausted: 64, DeadlineExceeded: 2 });
    expect(errorsBetween(undefined, after)).toBeUndefined();
    expect(errorsBetween(before, undefined)).toBeUndefined();
  });

  it("adds up runs and names them in the note", () => {
    const errors = sumErrors([
      { ResourceExhausted: 64 },
      undefined,
      { ResourceExhausted: 1, Unavailable: 2 },
    ]);
    expect(errors).toEqual({ ResourceExhausted: 65, Unavailable: 2 });
    expect(sumErrors([undefined])).toBeUndefined();
    expect(describeWithoutMessage(67, errors)).toBe(
      "67 answers without a message (gRPC errors); the server counted ResourceExhausted 65, Unavailable 2",
    );
    expect(describeWithoutMessage(3, {})).toBe(
      "3 answers without a message (gRPC errors); the server counted no error",
    );
    expect(describeWithoutMessage(3, undefined)).toBe("3 answers without a message (gRPC errors)");
  });
});
