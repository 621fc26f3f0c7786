import http2 from "node:http2";
import net from "node:net";
import { recordFailure, recordSuccess } from "@meshwork/discovery";
import { adoptStreamTable } from "@meshwork/runtime/internal";
import { headerListSize } from "./proxy/blame.js";

/**
 * The options of a stream upstream as Node's `ClientHttp2Session.request()` completes them: it
 * copies the caller's options and adds each priority field missing from the copy (weight, parent,
 * exclusive, silent) one by one, which for an `{ endStream }` literal cost more than the rest of
 * `request()`'s JavaScript (6.2% of a bare client's busy time, ~0% with these fields given; 3%
 * of the gateway's in the bench, issue 23). Given here with Node's defaults, nothing is added and
 * the stream is the same. One object per `endStream`, shared by every call: a field set on it for
 * one call (a `signal`, `waitForTrailers`) would go on every stream after it, hence `Readonly`.
 * Not frozen at run time: V8 copies a frozen object (request()'s `{ ...options }`) on a slow path,
 * 100-170 instead of 22-55 ns per copy (Node 20, 2e6 copies, medians of 7, 3 runs alternated).
 */
export const UPSTREAM_REQUEST_OPTIONS: Readonly<
  Record<"body" | "bodyless", Readonly<http2.ClientSessionRequestOptions & { silent: boolean }>>
> = Object.freeze({
  body: {
    endStream: false,
    weight: http2.constants.NGHTTP2_DEFAULT_WEIGHT,
    parent: 0,
    exclusive: false,
    silent: false,
  },
  bodyless: {
    endStream: true,
    weight: http2.constants.NGHTTP2_DEFAULT_WEIGHT,
    parent: 0,
    exclusive: false,
    silent: false,
  },
});

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
 * The streams a peer takes at once on one connection before it has said (SETTINGS): nghttp2's
 * and Node's `peerMaxConcurrentStreams` default.
 */
const ASSUMED_PEER_STREAMS = 100;

/** Headers over what the upstream connection's peer takes (SETTINGS_MAX_HEADER_LIST_SIZE). */
export interface HeadersTooLarge {
  tooLarge: true;
  /** Their size as HTTP/2 counts it. */
  size: number;
  limit: number;
}

/** Default of {@link UpstreamPoolOptions.maxConnectionsPerEndpoint}. */
export const DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT = 32;

export interface UpstreamPoolOptions {
  /**
   * HTTP/2 connections the gateway opens to one endpoint at most. A connection takes as many
   * streams at once as its peer's SETTINGS_MAX_CONCURRENT_STREAMS; when every open one is full,
   * another is opened, up to this many (then streams wait in the least loaded one).
   */
  maxConnectionsPerEndpoint: number;
}

/** One pooled HTTP/2 connection to an endpoint and the gateway's streams open on it. */
interface PooledSession {
  readonly session: http2.ClientHttp2Session;
  active: number;
  /**
   * What the peer said in its SETTINGS (kept from the event: Node's `remoteSettings` getter
   * reads them from the native session and builds a new object on every call); undefined until it has.
   */
  maxStreams: number | undefined;
  maxHeaderListSize: number | undefined;
}

/** An endpoint's connections, and the stream limit its connections last said (SETTINGS). */
interface Pool {
  readonly sessions: PooledSession[];
  peerStreams: number;
}

/**
 * The streams a connection takes at once: what its peer said, or, until it has, what the
 * endpoint's other connections said (the HTTP/2 default with none).
 */
function capacityOf(p: PooledSession, pool: Pool): number {
  return p.maxStreams ?? pool.peerStreams;
}

function usable(p: PooledSession): boolean {
  return !p.session.closed && !p.session.destroyed;
}

/**
 * The endpoints of every cluster, each with a pool of lazily opened HTTP/2 connections (so one
 * connection's stream limit never caps a service), least-request balancing, and passive outlier
 * ejection.
 */
export class Upstreams {
  readonly clusters = new Map<string, Endpoint[]>();
  readonly #pools = new Map<Endpoint, Pool>();
  readonly #policy: OutlierPolicy & { maxEjectedPercent: number };
  readonly #maxConnections: number;

  constructor(
    config: Record<string, readonly string[]>,
    policy: OutlierPolicy = defaultOutlierPolicy,
    pool: UpstreamPoolOptions = { maxConnectionsPerEndpoint: DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT },
  ) {
    // The gateway lets every endpoint of a cluster be ejected: `pick` then tries the one back soonest.
    this.#policy = { ...policy, maxEjectedPercent: 100 };
    this.#maxConnections = pool.maxConnectionsPerEndpoint;
    for (const [cluster, urls] of Object.entries(config)) {
      this.setEndpoints(
        cluster,
        urls.map((url) => ({ url, health: "SERVING" as const })),
      );
    }
  }

  /**
   * Replaces a cluster's endpoints (discovery calls this as instances come, go, or change
   * health). An endpoint that stays keeps its counters, ejection state and connections; one that
   * left has its connections closed once their calls finish.
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
      for (const p of this.#pools.get(gone)?.sessions ?? []) p.session.close();
      this.#pools.delete(gone);
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

  /**
   * A connection to `endpoint` with room for one more stream: the first open one whose streams
   * are below its peer's SETTINGS_MAX_CONCURRENT_STREAMS, else a new one (up to the pool's
   * size), else the least loaded (the stream then waits there for room).
   */
  session(endpoint: Endpoint): http2.ClientHttp2Session {
    return this.#pooled(endpoint).session;
  }

  /**
   * Opens a stream to `endpoint` on a connection with room for it, counted while it is open; a
   * {@link HeadersTooLarge} (nothing opened) when the headers exceed what that connection's peer
   * said it takes.
   */
  request(
    endpoint: Endpoint,
    headers: http2.OutgoingHttpHeaders,
    options: Readonly<http2.ClientSessionRequestOptions>,
  ): http2.ClientHttp2Stream | HeadersTooLarge {
    const pooled = this.#pooled(endpoint);
    const limit = pooled.maxHeaderListSize;
    if (limit !== undefined) {
      const size = headerListSize(headers);
      if (size > limit) return { tooLarge: true, size, limit };
    }
    const stream = pooled.session.request(headers, options);
    pooled.active++;
    // `on`: "close" comes once, and `once` would wrap the listener in another closure per call.
    stream.on("close", () => {
      pooled.active--;
    });
    return stream;
  }

  /** Connections open to `endpoint` now, with the streams on each (for tests and the admin). */
  connections(endpoint: Endpoint): number[] {
    return (this.#pools.get(endpoint)?.sessions ?? []).filter(usable).map((p) => p.active);
  }

  #pooled(endpoint: Endpoint): PooledSession {
    let pool = this.#pools.get(endpoint);
    if (!pool) {
      pool = { sessions: [], peerStreams: ASSUMED_PEER_STREAMS };
      this.#pools.set(endpoint, pool);
    }
    let least: PooledSession | undefined;
    for (const p of pool.sessions) {
      if (!usable(p)) continue;
      if (p.active < capacityOf(p, pool)) return p;
      if (!least || p.active < least.active) least = p;
    }
    if (least && pool.sessions.length >= this.#maxConnections) return least;
    const opened: PooledSession = {
      session: this.#connect(endpoint, pool),
      active: 0,
      maxStreams: undefined,
      maxHeaderListSize: undefined,
    };
    opened.session.on("remoteSettings", (settings: http2.Settings) => {
      opened.maxStreams = settings.maxConcurrentStreams;
      opened.maxHeaderListSize = settings.maxHeaderListSize;
      if (settings.maxConcurrentStreams !== undefined) pool.peerStreams = settings.maxConcurrentStreams;
    });
    pool.sessions.push(opened);
    return opened;
  }

  /** A new connection to `endpoint`, dropped from `pool` when it closes, fails or is told to go away. */
  #connect(endpoint: Endpoint, pool: Pool): http2.ClientHttp2Session {
    // No Nagle on the upstream connection: small frames (a unary answer's trailers) must not
    // wait for an ACK.
    const s = http2.connect(endpoint.url, {
      createConnection: (authority) =>
        net.connect({ host: authority.hostname, port: Number(authority.port), noDelay: true }),
    });
    // Finished upstream streams must not outlive their call (see the runtime's StreamTable).
    adoptStreamTable(s);
    const forget = () => {
      const at = pool.sessions.findIndex((p) => p.session === s);
      if (at >= 0) pool.sessions.splice(at, 1);
    };
    s.on("error", forget); // reported to the streams that were using it
    s.on("close", forget);
    s.on("goaway", forget);
    // An idle connection must not keep the gateway process alive.
    s.unref();
    return s;
  }

  succeeded(endpoint: Endpoint): void {
    recordSuccess(endpoint);
  }

  failed(endpoint: Endpoint, now = Date.now()): void {
    endpoint.failures++;
    // The mesh's one outlier rule: the balanced transport between services uses it too.
    recordFailure(endpoint, this.#policy, now);
  }

  close(): void {
    for (const pool of this.#pools.values()) for (const p of pool.sessions) p.session.close();
    this.#pools.clear();
  }
}
