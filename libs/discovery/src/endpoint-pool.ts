import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { type ClientProtocol, createClientTransport } from "@meshwork/runtime";
import { GuardedSessionManager } from "@meshwork/runtime/internal";
import { createLogger, type Logger, type Telemetry } from "@meshwork/telemetry";
import type { Counter } from "@opentelemetry/api";
import type { EndpointState, EndpointTracker } from "./endpoints.js";
import {
  isEjected,
  newOutlierState,
  type OutlierPolicy,
  type OutlierState,
  recordFailure,
  recordSuccess,
} from "./outliers.js";

/**
 * Failures that are the endpoint's fault: it is down or unreachable (UNAVAILABLE), broken
 * (INTERNAL, UNKNOWN, DATA_LOSS) or did not answer within the call's deadline. A refusal of the
 * request (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED...) or a call the caller cancelled says
 * nothing about the endpoint.
 */
export const ENDPOINT_FAULTS: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.Internal,
  Code.Unknown,
  Code.DataLoss,
  Code.DeadlineExceeded,
]);

/** One endpoint as the balanced transport uses it: its connection, calls in flight, outlier record. */
export interface EndpointSlot {
  url: string;
  transport: Transport;
  sessions: GuardedSessionManager;
  active: number;
  outlier: OutlierState;
}

export interface EndpointPoolOptions {
  service: string;
  endpoints: EndpointTracker;
  protocol: ClientProtocol;
  readMaxBytes: number | undefined;
  telemetry: Pick<Telemetry, "tracer"> | undefined;
  outliers: OutlierPolicy | undefined;
  logger: Logger | undefined;
  ejections: Counter | undefined;
}

/**
 * The endpoints of one service a balanced transport calls: one connection each (opened on first
 * use, closed when the endpoint leaves), the least-request choice of two, and passive outlier
 * ejection from each call's outcome.
 */
export class EndpointPool {
  readonly #options: EndpointPoolOptions;
  readonly #slots = new Map<string, EndpointSlot>();
  /** The latest time an ejection ends: before it, some endpoint may be out of the choice. */
  #ejectedUntil = 0;
  #logger: Logger | undefined;
  readonly #unsubscribe: () => void;

  constructor(options: EndpointPoolOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#unsubscribe = options.endpoints.onChange((s) => {
      if (s === options.service) this.#forgetGone();
    });
  }

  /** The endpoint for the next call: of two healthy ones picked at random, the one with fewer calls. */
  pick(): EndpointSlot {
    const { endpoints, service } = this.#options;
    let list = endpoints.healthy(service);
    if (list.length === 0) {
      throw new ConnectError(`no healthy endpoint of ${service}`, Code.Unavailable);
    }
    if (this.#ejectedUntil > 0) {
      const now = Date.now();
      if (this.#ejectedUntil > now) {
        const inChoice = list.filter((e) => !isEjected(this.#slot(e).outlier, now));
        if (inChoice.length > 0) list = inChoice; // all ejected: better a try than a certain failure
      } else this.#ejectedUntil = 0;
    }
    const a = list[Math.floor(Math.random() * list.length)] as EndpointState;
    if (list.length === 1) return this.#slot(a);
    let b = list[Math.floor(Math.random() * (list.length - 1))] as EndpointState;
    if (b === a) b = list[list.length - 1] as EndpointState;
    const sa = this.#slot(a);
    const sb = this.#slot(b);
    return sb.active < sa.active ? sb : sa;
  }

  succeeded(s: EndpointSlot): void {
    if (this.#options.outliers) recordSuccess(s.outlier);
  }

  /** Counts a failure against the endpoint when it is its fault, and ejects it after enough in a row. */
  failed(s: EndpointSlot, err: unknown): void {
    const { outliers, endpoints, service } = this.#options;
    if (!outliers || !ENDPOINT_FAULTS.has(ConnectError.from(err).code)) return;
    const now = Date.now();
    const healthy = endpoints.healthy(service);
    const ejectedNow = healthy.filter((e) => e.url !== s.url && isEjected(this.#slot(e).outlier, now)).length;
    const ms = recordFailure(s.outlier, outliers, now, { ejectedNow, total: healthy.length });
    if (ms === 0) return;
    this.#ejectedUntil = Math.max(this.#ejectedUntil, s.outlier.ejectedUntil);
    this.#options.ejections?.add(1, { upstream: service });
    this.#logger ??= createLogger({ service: `${service}-client` });
    this.#logger.warn(
      { upstream: service, endpoint: s.url, ejection_ms: ms, ejections: s.outlier.ejections },
      "endpoint ejected after consecutive failures",
    );
  }

  inFlight(): Record<string, number> {
    return Object.fromEntries([...this.#slots].map(([url, s]) => [url, s.active]));
  }

  outliers(): Record<string, { ejected: boolean; ejectedForMs: number; ejections: number }> {
    const now = Date.now();
    return Object.fromEntries(
      [...this.#slots].map(([url, s]) => [
        url,
        {
          ejected: isEjected(s.outlier, now),
          ejectedForMs: Math.max(0, s.outlier.ejectedUntil - now),
          ejections: s.outlier.ejections,
        },
      ]),
    );
  }

  close(): void {
    this.#unsubscribe();
    for (const slot of this.#slots.values()) slot.sessions.abort();
    this.#slots.clear();
  }

  #slot(e: EndpointState): EndpointSlot {
    let s = this.#slots.get(e.url);
    if (!s) {
      const sessions = new GuardedSessionManager(e.url);
      s = {
        transport: createClientTransport({
          baseUrl: e.url,
          protocol: this.#options.protocol,
          readMaxBytes: this.#options.readMaxBytes,
          sessionManager: sessions,
          telemetry: this.#options.telemetry,
        }),
        sessions,
        active: 0,
        outlier: newOutlierState(),
        url: e.url,
      };
      this.#slots.set(e.url, s);
    }
    return s;
  }

  /** Forgets the connections of endpoints that left. */
  #forgetGone(): void {
    const { endpoints, service } = this.#options;
    const known = new Set(endpoints.all(service).map((e) => e.url));
    for (const [url, slot] of this.#slots) {
      if (known.has(url)) continue;
      slot.sessions.abort(); // its calls in flight fail with UNAVAILABLE: retryable elsewhere
      this.#slots.delete(url);
    }
  }
}
