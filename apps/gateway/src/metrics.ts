import type { BoundCounter, BoundHistogram, Telemetry } from "@meshwork/telemetry";
import type { Upstreams } from "./upstreams.js";

/** The gateway's own metrics, as the proxy records them. */
export interface GatewayMetrics {
  duration: BoundHistogram;
  /** Counts an answer by route and code (or HTTP status), and by the upstream that gave it. */
  count(route: string, code: string, upstream?: string): void;
}

type BoundCache = Map<string, Map<string, () => void>>;

/** A counter bound once per (route or upstream, outcome): two-level maps, no key built per call. */
function boundFor(
  cache: BoundCache,
  counter: BoundCounter,
  label: "route" | "upstream",
  a: string,
  code: string,
) {
  let inner = cache.get(a);
  if (!inner) {
    inner = new Map();
    cache.set(a, inner);
  }
  let add = inner.get(code);
  if (!add) {
    add = counter.bind({ [label]: a, code });
    inner.set(code, add);
  }
  return add;
}

/** Calls by route and by upstream, their durations, and the calls in flight per endpoint. */
export function createGatewayMetrics(telemetry: Telemetry, upstreams: Upstreams): GatewayMetrics {
  const requests = telemetry.createBoundCounter("gateway.requests", "Calls answered, by route and outcome");
  const upstreamRequests = telemetry.createBoundCounter(
    "gateway.upstream.requests",
    "Calls answered, by the upstream endpoint that served them and outcome",
  );
  const bound: BoundCache = new Map();
  const boundUpstream: BoundCache = new Map();
  telemetry.meter
    .createObservableGauge("gateway.upstream.active", {
      description: "Calls in flight per upstream endpoint",
    })
    .addCallback((r) => {
      for (const endpoints of upstreams.clusters.values()) {
        for (const e of endpoints) r.observe(e.active, { upstream: e.url, cluster: e.cluster });
      }
    });
  return {
    duration: telemetry.createBoundHistogram("gateway.duration", {
      description: "Time from a call's headers to its last byte, at the gateway",
      unit: "s",
      boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    count(route, code, upstream) {
      boundFor(bound, requests, "route", route, code)();
      if (upstream) boundFor(boundUpstream, upstreamRequests, "upstream", upstream, code)();
    },
  };
}
