import http2 from "node:http2";
import net from "node:net";

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
      this.clusters.set(
        cluster,
        urls.map((url) => ({
          cluster,
          url,
          authority: new URL(url).host,
          active: 0,
          total: 0,
          failures: 0,
          consecutiveFailures: 0,
          ejectedUntil: 0,
          ejections: 0,
        })),
      );
    }
  }

  /**
   * The endpoint with the fewest requests in flight among those not ejected (and not in
   * `avoid`, the ones a retried call already failed on); when every one is ejected, the one
   * whose ejection ends first (better a try than a certain failure).
   */
  pick(cluster: string, now = Date.now(), avoid?: ReadonlySet<Endpoint>): Endpoint | undefined {
    const endpoints = this.clusters.get(cluster);
    if (!endpoints || endpoints.length === 0) return undefined;
    let best: Endpoint | undefined;
    for (const e of endpoints) {
      if (e.ejectedUntil > now || avoid?.has(e)) continue;
      if (!best || e.active < best.active) best = e;
    }
    if (best) return best;
    // Every endpoint avoided (a retry that has tried them all): any that is not ejected.
    if (avoid && avoid.size > 0) return this.pick(cluster, now);
    return endpoints.reduce((a, b) => (b.ejectedUntil < a.ejectedUntil ? b : a));
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
