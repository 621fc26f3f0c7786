/**
 * Reading what a process of the mesh publishes on `GET /metrics` (Prometheus text): RED figures,
 * breaker states, outbox backlog, consumer backlog. Only the series the console shows are kept.
 */

/** One sample: metric name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses Prometheus text exposition into samples (comments and malformed lines skipped). */
export function parsePrometheusText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const value = Number(m[3]);
    if (!Number.isNaN(value)) out.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** Calls per method and in total since the process started, with errors and mean duration. */
export interface Red {
  requests: number;
  errors: number;
  meanMs: number;
  methods: Array<{ method: string; requests: number; errors: number }>;
}

/**
 * RED from `rpc_server_requests_total` and `rpc_server_duration_*` (a service), or
 * `gateway_requests_total` and `gateway_duration_*` by route (the gateway's admin); health
 * probes left out.
 */
export function redFigures(samples: readonly Sample[]): Red {
  const methods = new Map<string, { requests: number; errors: number }>();
  let sum = 0;
  let count = 0;
  for (const s of samples) {
    if (s.labels.rpc_service === "grpc.health.v1.Health") continue;
    if (s.name === "rpc_server_requests_total" || s.name === "gateway_requests_total") {
      const key = s.labels.route ?? `${s.labels.rpc_service ?? "?"}/${s.labels.rpc_method ?? "?"}`;
      if (key.includes("grpc.health.v1.Health")) continue;
      const m = methods.get(key) ?? { requests: 0, errors: 0 };
      m.requests += s.value;
      if ((s.labels.rpc_code ?? s.labels.code ?? "ok").toLowerCase() !== "ok") m.errors += s.value;
      methods.set(key, m);
    } else if (/^(rpc_server|gateway)_duration(_seconds)?_sum$/.test(s.name)) {
      sum += s.value;
    } else if (/^(rpc_server|gateway)_duration(_seconds)?_count$/.test(s.name)) {
      count += s.value;
    }
  }
  const list = [...methods.entries()]
    .map(([method, m]) => ({ method, ...m }))
    .sort((a, b) => a.method.localeCompare(b.method));
  return {
    requests: list.reduce((n, m) => n + m.requests, 0),
    errors: list.reduce((n, m) => n + m.errors, 0),
    meanMs: count > 0 ? (sum / count) * 1000 : 0,
    methods: list,
  };
}

const BREAKER_STATES = ["closed", "open", "half-open"] as const;

/** Breaker state per upstream from `resilience_breaker_state` (0 closed, 1 open, 2 half-open). */
export function breakerStates(samples: readonly Sample[]): Array<{ upstream: string; state: string }> {
  return samples
    .filter((s) => s.name === "resilience_breaker_state")
    .map((s) => ({ upstream: s.labels.upstream ?? "?", state: BREAKER_STATES[s.value] ?? String(s.value) }))
    .sort((a, b) => a.upstream.localeCompare(b.upstream));
}

/** Unsent outbox rows and the oldest one's age, when the process runs an outbox relay. */
export function outboxBacklog(
  samples: readonly Sample[],
): { backlog: number; oldestAgeSeconds: number } | undefined {
  const backlog = samples.find((s) => s.name === "outbox_backlog");
  if (!backlog) return undefined;
  const age = samples.find((s) => /^outbox_oldest_age(_seconds)?$/.test(s.name));
  return { backlog: backlog.value, oldestAgeSeconds: age?.value ?? 0 };
}

/** Pending and unacknowledged events per durable consumer of the process. */
export function consumerBacklog(
  samples: readonly Sample[],
): Array<{ consumer: string; pending: number; ackPending: number }> {
  const byConsumer = new Map<string, { pending: number; ackPending: number }>();
  for (const s of samples) {
    const which =
      s.name === "events_consumer_pending"
        ? "pending"
        : s.name === "events_consumer_ack_pending"
          ? "ackPending"
          : "";
    if (!which) continue;
    const consumer = s.labels.messaging_consumer_group_name ?? s.labels.consumer ?? "?";
    const c = byConsumer.get(consumer) ?? { pending: 0, ackPending: 0 };
    c[which] = s.value;
    byConsumer.set(consumer, c);
  }
  return [...byConsumer.entries()].map(([consumer, c]) => ({ consumer, ...c }));
}

/** Fetches and parses `http://<address>/metrics`; rejects with a sentence when it does not answer. */
export async function scrape(address: string, timeoutMs = 2_000): Promise<Sample[]> {
  let res: Response;
  try {
    res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new Error(`no answer from http://${address}/metrics (${(err as Error).message})`);
  }
  if (!res.ok) throw new Error(`http://${address}/metrics answered ${res.status}`);
  return parsePrometheusText(await res.text());
}
