import http2 from "node:http2";
import net from "node:net";
import { adoptStreamTable } from "@meshwork/runtime/internal";

/** One upstream endpoint: its HTTP/2 connection, load and health as the gateway sees them. */
export interface Endpoint {
  cluster: string;
  url: string;
  /** `host:port`, the `:authority` of requests to it. */
  authority: string;
  /** Requests in flight to it now. */
  active: number;
  total: number;
  failures: number;
  consecutiveFailures: number;
  /**
   * Active health: the endpoint's `grpc.health.v1` status as discovery follows it; only SERVING
   * endpoints are picked. SERVING for static endpoints the gateway does not health-check.
   */
  health: "SERVING" | "NOT_SERVING" | "UNKNOWN";
  /** Passive outlier ejection: not picked before this time (ms since epoch); 0 when in. */
  ejectedUntil: number;
  ejections: number;
}

export interface OutlierPolicy {
  /** Consecutive failures (connection errors, UNAVAILABLE) that eject an endpoint. */
  consecutiveFailures: number;
  /** First ejection; each further ejection of the same endpoint doubles it, up to `maxEjectionMs`. */
  baseEjectionMs: number;
  maxEjectionMs: number;
}

export const defaultOutlierPolicy: OutlierPolicy = {
  consecutiveFailures: 5,
  baseEjectionMs: 1_000,
  maxEjectionMs: 30_000,
};

/**
 * The endpoints of every cluster, each with one lazily opened HTTP/2 connection (re-opened after
 * it closes), least-request balancing, and passive outlier ejection.
 */
export class Upstreams {
  readonly clusters = new Map<string, Endpoint[]>();
  readonly #sessions = new Map<Endpoint, http2.ClientHttp2Session>();
  readonly #policy: OutlierPolicy;

  constructor(config: Record<string, readonly string[]>, policy: OutlierPolicy = defaultOutlierPolicy) {
    this.#policy = policy;
    for (const [cluster, urls] of Object.entries(config)) {
      this.setEndpoints(
        cluster,
        urls.map((url) => ({ url, health: "SERVING" as const })),
      );
    }
  }

  /**
   * Replaces a cluster's endpoints (discovery calls this as instances come, go, or change
   * health). An endpoint that stays keeps its counters, ejection state and connection; one that
   * left has its connection closed once its calls finish.
   */
  setEndpoints(cluster: string, list: readonly { url: string; health: Endpoint["health"] }[]): void {
    const old = new Map((this.clusters.get(cluster) ?? []).map((e) => [e.url, e]));
    const next = list.map(({ url, health }) => {
      const kept = old.get(url);
      old.delete(url);
      if (kept) {
        kept.health = health;
        return kept;
      }
      return {
        cluster,
        url,
        authority: new URL(url).host,
        health,
        active: 0,
        total: 0,
        failures: 0,
        consecutiveFailures: 0,
        ejectedUntil: 0,
        ejections: 0,
      };
    });
    if (next.length > 0) this.clusters.set(cluster, next);
    else this.clusters.delete(cluster);
    for (const gone of old.values()) {
      this.#sessions.get(gone)?.close();
      this.#sessions.delete(gone);
    }
  }

  /**
   * The endpoint with the fewest requests in flight among the healthy ones not ejected (and not
   * in `avoid`, the ones a retried call already failed on); when every healthy one is ejected,
   * the one whose ejection ends first (better a try than a certain failure). An endpoint that is
   * not SERVING is never picked: with none, there is no endpoint.
   */
  pick(cluster: string, now = Date.now(), avoid?: ReadonlySet<Endpoint>): Endpoint | undefined {
    const endpoints = this.clusters.get(cluster);
    if (!endpoints || endpoints.length === 0) return undefined;
    let best: Endpoint | undefined;
    let soonest: Endpoint | undefined;
    for (const e of endpoints) {
      if (e.health !== "SERVING") continue;
      if (!soonest || e.ejectedUntil < soonest.ejectedUntil) soonest = e;
      if (e.ejectedUntil > now || avoid?.has(e)) continue;
      if (!best || e.active < best.active) best = e;
    }
    if (best) return best;
    // Every endpoint avoided (a retry that has tried them all): any that is not ejected.
    if (avoid && avoid.size > 0) return this.pick(cluster, now);
    return soonest;
  }

  session(endpoint: Endpoint): http2.ClientHttp2Session {
    let session = this.#sessions.get(endpoint);
    if (session && !session.closed && !session.destroyed) return session;
    // No Nagle on the upstream connection: small frames (a unary answer's trailers) must not
    // wait for an ACK.
    session = http2.connect(endpoint.url, {
      createConnection: (authority) =>
        net.connect({ host: authority.hostname, port: Number(authority.port), noDelay: true }),
    });
    const s = session;
    // Finished upstream streams must not outlive their call (see the runtime's StreamTable).
    adoptStreamTable(s);
    this.#sessions.set(endpoint, s);
    const forget = () => {
      if (this.#sessions.get(endpoint) === s) this.#sessions.delete(endpoint);
    };
    s.on("error", forget); // reported to the streams that were using it
    s.on("close", forget);
    s.on("goaway", forget);
    // An idle connection must not keep the gateway process alive.
    s.unref();
    return s;
  }

  succeeded(endpoint: Endpoint): void {
    endpoint.consecutiveFailures = 0;
  }

  failed(endpoint: Endpoint, now = Date.now()): void {
    endpoint.failures++;
    endpoint.consecutiveFailures++;
    if (endpoint.consecutiveFailures >= this.#policy.consecutiveFailures) {
      const ms = Math.min(this.#policy.maxEjectionMs, this.#policy.baseEjectionMs * 2 ** endpoint.ejections);
      endpoint.ejections++;
      endpoint.ejectedUntil = now + ms;
      endpoint.consecutiveFailures = 0;
    }
  }

  close(): void {
    for (const s of this.#sessions.values()) s.close();
    this.#sessions.clear();
  }
}
