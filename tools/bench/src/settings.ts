/**
 * The harness's knobs, all from `MESHWORK_BENCH_*` environment variables (the ones turbo passes
 * through to the `bench` task).
 */

/** Settings of one bench run. */
export interface BenchSettings {
  /** Measured duration of each h2load run, ms (`MESHWORK_BENCH_DURATION_S`, default 10 s). */
  durationMs: number;
  /** Warm-up before the max-rate measurement, ms (`MESHWORK_BENCH_WARMUP_S`, default min(2 s, duration/4)). */
  warmUpMs: number;
  /** Connections of the max-rate run (`MESHWORK_BENCH_CLIENTS`, default 4). */
  clients: number;
  /** Max concurrent streams per connection (`MESHWORK_BENCH_STREAMS`, default 32). */
  streams: number;
  /** Connections of the fixed-rate run (`MESHWORK_BENCH_LATENCY_CLIENTS`, default 10). */
  latencyClients: number;
  /**
   * Max-rate rounds per server (`MESHWORK_BENCH_ROUNDS`, default 3): every server of a scenario
   * runs side by side and the rounds alternate between them, so a slow spell of a noisy machine
   * hits all of them; the median counts.
   */
  rounds: number;
  /** Fixed latency rate, req/s, instead of half the baseline's max (`MESHWORK_BENCH_RATE`). */
  rate: number | undefined;
  /** Only servers whose name contains one of these (`MESHWORK_BENCH_SERVERS`, comma-separated). */
  servers: string[] | undefined;
  /**
   * Whether the extras (client protocols, memory per 1000 streams) run after the scenarios
   * (`MESHWORK_BENCH_EXTRAS`, default on; `off` skips them when only a scenario's table is wanted).
   */
  extras: boolean;
  /** Where the JSON results go (`MESHWORK_BENCH_OUT`, default `<repo>/.bench/results.json`). */
  outFile: string | undefined;
}

function positive(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
  integer: boolean,
): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(
      `${name} must be a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

/** Reads the settings from `env`; throws on a malformed value. */
export function readSettings(env: Record<string, string | undefined> = process.env): BenchSettings {
  const durationMs = positive(env, "MESHWORK_BENCH_DURATION_S", 10, false) * 1000;
  const warmUpMs = positive(env, "MESHWORK_BENCH_WARMUP_S", Math.min(2, durationMs / 4000), false) * 1000;
  const rate = env.MESHWORK_BENCH_RATE?.trim() ? positive(env, "MESHWORK_BENCH_RATE", 1, false) : undefined;
  const servers = env.MESHWORK_BENCH_SERVERS?.split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  return {
    durationMs,
    warmUpMs,
    clients: positive(env, "MESHWORK_BENCH_CLIENTS", 4, true),
    streams: positive(env, "MESHWORK_BENCH_STREAMS", 32, true),
    latencyClients: positive(env, "MESHWORK_BENCH_LATENCY_CLIENTS", 10, true),
    rounds: positive(env, "MESHWORK_BENCH_ROUNDS", 3, true),
    rate,
    servers: servers && servers.length > 0 ? servers : undefined,
    outFile: env.MESHWORK_BENCH_OUT?.trim() || undefined,
    extras: env.MESHWORK_BENCH_EXTRAS?.trim().toLowerCase() !== "off",
  };
}

/**
 * The most calls h2load may have in flight at once in any run of these settings: its connections
 * (the max-rate or the fixed-rate run's, whichever has more) × the streams of each.
 */
export function callsInFlightOf(settings: BenchSettings): number {
  return Math.max(settings.clients, settings.latencyClients) * settings.streams;
}
