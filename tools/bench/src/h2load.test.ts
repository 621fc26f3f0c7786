import { describe, expect, it } from "vitest";
import {
  answersWithoutMessage,
  fixedRateArgs,
  maxRateArgs,
  parseH2loadDuration,
  parseH2loadOutput,
  parseLatencyLog,
  percentile,
  summarizeLatencies,
} from "./h2load.js";

// Verbatim output of h2load 1.52 (Debian 12) in timing-based mode.
const OUTPUT_1_52 = `starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 1s of warm-up time and 3s of main duration for measurements.
Warm-up started for thread #0.
progress: 25% of clients started
progress: 100% of clients started
Application protocol: h2c
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 4.00s, 29333.33 req/s, 3.25MB/s
requests: 88000 total, 88000 started, 88000 done, 87990 succeeded, 10 failed, 10 errored, 0 timeout
status codes: 88064 2xx, 0 3xx, 2 4xx, 1 5xx
traffic: 9.74MB (10216555) total, 324.14KB (331920) headers (space savings 96.10%), 8.95MB (9389440) data
                     min         max         mean         sd        +/- sd
time for request:      356us    143.55ms      4.26ms      6.46ms    98.18%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :    7274.33     7391.81     7333.06       48.16    50.00%
`;

// The older summary format (traffic in plain bytes), as in nghttp2's h2load how-to.
const OUTPUT_OLD = `finished in 7.08s, 141164.80 req/s, 555.33MB/s
requests: 1000000 total, 1000000 started, 1000000 done, 1000000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 1000000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 4125025824 bytes total, 11023424 bytes headers (space savings 93.07%), 4096000000 bytes data
                     min         max         mean         sd        +/- sd
time for request:    15.31ms    146.85ms     69.78ms      9.26ms    92.43%
`;

describe("parseH2loadDuration", () => {
  it("converts every unit h2load prints to milliseconds", () => {
    expect(parseH2loadDuration("356us")).toBeCloseTo(0.356);
    expect(parseH2loadDuration("143.55ms")).toBeCloseTo(143.55);
    expect(parseH2loadDuration("4.00s")).toBe(4000);
    expect(parseH2loadDuration("1m")).toBe(60_000);
  });

  it("rejects anything else", () => {
    expect(() => parseH2loadDuration("fast")).toThrow(/not a h2load duration/);
    expect(() => parseH2loadDuration("12")).toThrow();
  });
});

describe("parseH2loadOutput", () => {
  it("reads the summary of h2load 1.52", () => {
    const s = parseH2loadOutput(OUTPUT_1_52);
    expect(s.finishedInS).toBe(4);
    expect(s.reqPerSec).toBeCloseTo(29333.33);
    expect(s.requests).toEqual({
      total: 88000,
      started: 88000,
      done: 88000,
      succeeded: 87990,
      failed: 10,
      errored: 10,
      timeout: 0,
    });
    expect(s.status).toEqual({ "2xx": 88064, "3xx": 0, "4xx": 2, "5xx": 1 });
    expect(s.traffic).toEqual({ totalBytes: 10216555, headerBytes: 331920, dataBytes: 9389440 });
    expect(s.timeForRequest.minMs).toBeCloseTo(0.356);
    expect(s.timeForRequest.maxMs).toBeCloseTo(143.55);
    expect(s.timeForRequest.meanMs).toBeCloseTo(4.26);
    expect(s.timeForRequest.sdMs).toBeCloseTo(6.46);
  });

  it("reads the older traffic format", () => {
    const s = parseH2loadOutput(OUTPUT_OLD);
    expect(s.reqPerSec).toBeCloseTo(141164.8);
    expect(s.traffic).toEqual({ totalBytes: 4125025824, headerBytes: 11023424, dataBytes: 4096000000 });
    expect(s.timeForRequest.meanMs).toBeCloseTo(69.78);
  });

  it("fails clearly when h2load printed no summary", () => {
    expect(() => parseH2loadOutput("starting benchmark...\nclient could not connect to host\n")).toThrow(
      /no `finished in` line/,
    );
  });
});

describe("answersWithoutMessage", () => {
  const run = (succeeded: number, dataBytes: number) => {
    const s = parseH2loadOutput(OUTPUT_OLD);
    return { ...s, requests: { ...s.requests, succeeded }, traffic: { ...s.traffic, dataBytes } };
  };

  it("is 0 when every answer carried the message", () => {
    expect(answersWithoutMessage(run(5000, 5000 * 85), 85)).toBe(0);
    // Answers still in flight when a timing-based run stops add bytes, never remove them.
    expect(answersWithoutMessage(run(5000, 5128 * 85), 85)).toBe(0);
  });

  it("counts the trailers-only (gRPC error) answers", () => {
    expect(answersWithoutMessage(run(5000, 4990 * 85), 85)).toBe(10);
    expect(answersWithoutMessage(run(5000, 0), 85)).toBe(5000);
  });
});

describe("parseLatencyLog", () => {
  it("reads start, status and latency of each line, failed streams included", () => {
    const log = "1795581736112434\t200\t3124\n1795581736112436\t0\t3157\n1795581736112440\t-1\t90\n\n";
    expect(parseLatencyLog(log)).toEqual([
      { startUs: 1795581736112434, status: 200, latencyUs: 3124 },
      { startUs: 1795581736112436, status: 0, latencyUs: 3157 },
      { startUs: 1795581736112440, status: -1, latencyUs: 90 },
    ]);
  });

  it("rejects a malformed line", () => {
    expect(() => parseLatencyLog("1795581736112434\t200\n")).toThrow(/malformed/);
  });
});

describe("percentile", () => {
  it("uses the nearest rank", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 0.5)).toBe(50);
    expect(percentile(values, 0.99)).toBe(99);
    expect(percentile(values, 1)).toBe(100);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNaN();
  });
});

describe("summarizeLatencies", () => {
  // 1000 requests sent 1 ms apart over 1 s; the i-th (from 0) took i+1 µs; the 10 last failed.
  const entries = Array.from({ length: 1000 }, (_, i) => ({
    startUs: 1_000_000_000 + i * 1000,
    status: i >= 990 ? -1 : 200,
    latencyUs: i + 1,
  }));

  it("computes percentiles in ms over the successful requests, and the rate completed", () => {
    const s = summarizeLatencies(entries);
    expect(s.count).toBe(990);
    expect(s.failed).toBe(10);
    expect(s.p50Ms).toBeCloseTo(0.495);
    expect(s.p99Ms).toBeCloseTo(0.981);
    expect(s.maxMs).toBeCloseTo(0.99);
    // First sent at 0, last completed at 999 ms + 1000 µs: 1000 requests in 1 s.
    expect(s.achievedRate).toBeCloseTo(1000);
  });

  it("skips the requests sent at the start of the run", () => {
    const s = summarizeLatencies(entries, 500);
    expect(s.count).toBe(490);
    expect(s.p50Ms).toBeCloseTo(0.745);
  });

  it("reports a server that falls behind by the rate it completed", () => {
    // Sent 1 ms apart but answered ever later: the last answer arrives after 2 s.
    const slow = entries.map((e, i) => ({ ...e, latencyUs: i * 1000 + 1 }));
    expect(summarizeLatencies(slow).achievedRate).toBeCloseTo(500, -1);
  });

  it("is NaN, not a crash, for an empty log", () => {
    const s = summarizeLatencies([]);
    expect(s.count).toBe(0);
    expect(s.p99Ms).toBeNaN();
  });
});

describe("h2load arguments", () => {
  const base = {
    url: "http://127.0.0.1:4000/meshwork.users.v1.UserService/GetUser",
    bodyFile: "/tmp/body",
    headers: ["content-type: application/grpc", "te: trailers"],
    streams: 32,
  };

  it("runs the max-rate test timing-based with a warm-up", () => {
    expect(maxRateArgs({ ...base, clients: 4, durationMs: 10_000, warmUpMs: 2000 })).toEqual([
      ...["-t", "1", "-c", "4", "-m", "32", "-D", "10000ms", "--warm-up-time=2000ms"],
      ...["-d", "/tmp/body", "-H", "content-type: application/grpc", "-H", "te: trailers", base.url],
    ]);
  });

  it("staggers the fixed-rate connections and splits the rate between them", () => {
    const args = fixedRateArgs({ ...base, clients: 10, rate: 6000, requests: 60_000, logFile: "/tmp/log" });
    expect(args).toEqual(expect.arrayContaining(["-c", "10", "-r", "1", "--rate-period=1ms", "-n", "60000"]));
    expect(args).toContain("--rps=600.000");
    expect(args).toContain("--log-file=/tmp/log");
    expect(args).not.toContain("-D");
  });

  it("sends GETs to the URIs of an input file, without a body, when given one", () => {
    const args = maxRateArgs({
      ...base,
      bodyFile: "",
      inputFile: "/tmp/uris",
      headers: [],
      clients: 4,
      durationMs: 1000,
      warmUpMs: 0,
    });
    expect(args).toEqual(["-t", "1", "-c", "4", "-m", "32", "-D", "1000ms", "-i", "/tmp/uris"]);
    const fixed = fixedRateArgs({
      ...base,
      bodyFile: "",
      inputFile: "/tmp/uris",
      clients: 2,
      rate: 10,
      requests: 10,
      logFile: "/tmp/log",
    });
    expect(fixed.slice(-2)).toEqual(["-i", "/tmp/uris"]);
    expect(fixed).not.toContain("-d");
    expect(fixed).not.toContain(base.url);
  });
});
