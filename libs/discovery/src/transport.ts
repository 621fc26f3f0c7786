import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type Interceptor,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createMethodUrl, runStreamingCall, runUnaryCall } from "@connectrpc/connect/protocol";
import { type ClientProtocol, createClientTransport, DEFAULT_CLIENT_PROTOCOL } from "@meshwork/runtime";
import { GuardedSessionManager } from "@meshwork/runtime/internal";
import { createLogger, type Logger, type Telemetry } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import type { EndpointState, EndpointTracker } from "./endpoints.js";
import {
  DEFAULT_OUTLIER_POLICY,
  isEjected,
  newOutlierState,
  type OutlierPolicy,
  type OutlierState,
  recordFailure,
  recordSuccess,
} from "./outliers.js";

export interface BalancedTransportOptions {
  /** The service's short name in the registry (`payments`). */
  service: string;
  endpoints: EndpointTracker;
  protocol?: ClientProtocol;
  /** Run once per call around the endpoint choice: a retry inside them picks again. */
  interceptors?: Interceptor[];
  /**
   * Whose tracer records the CLIENT span of each attempt (made by each endpoint's transport, so
   * it names the endpoint that was called); the global tracer provider's when absent.
   */
  telemetry?: Pick<Telemetry, "tracer">;
  /** Applied to calls that set no timeout of their own. */
  defaultTimeoutMs?: number;
  readMaxBytes?: number;
  /** Passive outlier ejection ({@link DEFAULT_OUTLIER_POLICY} unless given); `false` turns it off. */
  outliers?: OutlierPolicy | false;
  /** Where an ejection is logged (one line per ejection); a logger of the service's own when absent. */
  logger?: Logger;
  /** Counts ejections (`discovery.outlier.ejections`, by service). */
  meter?: Meter;
}

/**
 * Failures that are the endpoint's fault: it is down or unreachable (UNAVAILABLE), broken
 * (INTERNAL, UNKNOWN, DATA_LOSS) or did not answer within the call's deadline. A refusal of the
 * request (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED...) or a call the caller cancelled says
 * nothing about the endpoint.
 */
const ENDPOINT_FAULTS: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.Internal,
  Code.Unknown,
  Code.DataLoss,
  Code.DeadlineExceeded,
]);

/** A transport that can also report and close what it opened. */
export interface BalancedTransport extends Transport {
  /** Calls in flight per endpoint URL. */
  inFlight(): Record<string, number>;
  /** Outlier ejection per endpoint URL: whether it is out of the choice now, for how long, how often. */
  outliers(): Record<string, { ejected: boolean; ejectedForMs: number; ejections: number }>;
  close(): void;
}

/**
 * A transport over every healthy endpoint of one service: each call goes to the endpoint with
 * fewer calls in flight of two picked at random (least-request, "power of two choices"), over
 * one HTTP/2 connection per endpoint. The interceptors (the resilience policy) wrap the whole
 * call, so a retried call chooses its endpoint again. With no healthy endpoint the call fails
 * with UNAVAILABLE naming the service.
 *
 * An endpoint that is SERVING but fails calls in a row by its own fault ({@link ENDPOINT_FAULTS})
 * is ejected from the choice for a while ({@link OutlierPolicy}), so one bad instance does not
 * fail every other call and open the caller's circuit breaker for the whole service. When every
 * healthy endpoint is ejected, they are tried anyway.
 */
export function createBalancedTransport(options: BalancedTransportOptions): BalancedTransport {
  const { service, endpoints } = options;
  const protocol = options.protocol ?? DEFAULT_CLIENT_PROTOCOL;
  const grpc = protocol === "grpc";
  const perEndpoint = new Map<
    string,
    {
      transport: Transport;
      sessions: GuardedSessionManager;
      active: number;
      outlier: OutlierState;
      url: string;
    }
  >();
  const outliers = options.outliers === false ? undefined : (options.outliers ?? DEFAULT_OUTLIER_POLICY);
  /** The latest time an ejection ends: before it, some endpoint may be out of the choice. */
  let ejectedUntil = 0;
  let logger = options.logger;
  const ejections = options.meter?.createCounter("discovery.outlier.ejections", {
    description:
      "Endpoints ejected from calls between services after consecutive failures, by upstream service",
  });
  const baseUrl = `http://${service}.meshwork.invalid`; // only in `req.url` seen by interceptors

  const slot = (e: EndpointState) => {
    let s = perEndpoint.get(e.url);
    if (!s) {
      const sessions = new GuardedSessionManager(e.url);
      s = {
        transport: createClientTransport({
          baseUrl: e.url,
          protocol,
          readMaxBytes: options.readMaxBytes,
          sessionManager: sessions,
          telemetry: options.telemetry,
        }),
        sessions,
        active: 0,
        outlier: newOutlierState(),
        url: e.url,
      };
      perEndpoint.set(e.url, s);
    }
    return s;
  };
  const pick = () => {
    let list = endpoints.healthy(service);
    if (list.length === 0) {
      throw new ConnectError(`no healthy endpoint of ${service}`, Code.Unavailable);
    }
    if (ejectedUntil > 0) {
      const now = Date.now();
      if (ejectedUntil > now) {
        const inChoice = list.filter((e) => !isEjected(slot(e).outlier, now));
        if (inChoice.length > 0) list = inChoice; // all ejected: better a try than a certain failure
      } else ejectedUntil = 0;
    }
    const a = list[Math.floor(Math.random() * list.length)] as EndpointState;
    if (list.length === 1) return slot(a);
    let b = list[Math.floor(Math.random() * (list.length - 1))] as EndpointState;
    if (b === a) b = list[list.length - 1] as EndpointState;
    const sa = slot(a);
    const sb = slot(b);
    return sb.active < sa.active ? sb : sa;
  };
  type Slot = ReturnType<typeof slot>;
  const succeeded = (s: Slot) => {
    if (outliers) recordSuccess(s.outlier);
  };
  const failed = (s: Slot, err: unknown) => {
    if (!outliers || !ENDPOINT_FAULTS.has(ConnectError.from(err).code)) return;
    const now = Date.now();
    const healthy = endpoints.healthy(service);
    const ejectedNow = healthy.filter((e) => e.url !== s.url && isEjected(slot(e).outlier, now)).length;
    const ms = recordFailure(s.outlier, outliers, now, { ejectedNow, total: healthy.length });
    if (ms === 0) return;
    ejectedUntil = Math.max(ejectedUntil, s.outlier.ejectedUntil);
    ejections?.add(1, { upstream: service });
    logger ??= createLogger({ service: `${service}-client` });
    logger.warn(
      { upstream: service, endpoint: s.url, ejection_ms: ms, ejections: s.outlier.ejections },
      "endpoint ejected after consecutive failures",
    );
  };
  // Forget the connections of endpoints that left.
  const unsubscribe = endpoints.onChange((s) => {
    if (s !== service) return;
    const known = new Set(endpoints.all(service).map((e) => e.url));
    for (const [url, slot] of perEndpoint) {
      if (known.has(url)) continue;
      slot.sessions.abort(); // its calls in flight fail with UNAVAILABLE: retryable elsewhere
      perEndpoint.delete(url);
    }
  });

  /** What a unary and a streaming call share: the deadline, its header, the request's frame. */
  const common = (
    method: Parameters<Transport["unary"]>[0] | Parameters<Transport["stream"]>[0],
    timeoutMs: number | undefined,
    header: ConstructorParameters<typeof Headers>[0] | undefined,
    contextValues: ContextValues | undefined,
  ) => {
    const t = timeoutMs ?? options.defaultTimeoutMs;
    const reqHeader = new Headers(header);
    if (t !== undefined && t > 0) {
      if (grpc) reqHeader.set("grpc-timeout", `${Math.ceil(t)}m`);
      else reqHeader.set("connect-timeout-ms", String(Math.ceil(t)));
    }
    return {
      timeoutMs: t,
      req: {
        service: method.parent,
        method,
        requestMethod: "POST",
        url: createMethodUrl(baseUrl, method),
        header: reqHeader,
        contextValues: contextValues ?? createContextValues(),
      },
    };
  };

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: Parameters<Transport["unary"]>[0] & { input: I; output: O },
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      message: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const c = common(method, timeoutMs, header, contextValues);
      return runUnaryCall<I, O>({
        interceptors: options.interceptors,
        signal,
        timeoutMs: c.timeoutMs,
        req: { ...c.req, stream: false, method, message },
        next: async (req) => {
          const s = pick();
          s.active++;
          try {
            const res = await s.transport.unary(
              method,
              req.signal,
              undefined,
              req.header,
              req.message,
              req.contextValues,
            );
            succeeded(s);
            return res;
          } catch (err) {
            failed(s, err);
            throw err;
          } finally {
            s.active--;
          }
        },
      });
    },
    async stream<I extends DescMessage, O extends DescMessage>(
      method: Parameters<Transport["stream"]>[0] & { input: I; output: O },
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      const c = common(method, timeoutMs, header, contextValues);
      return runStreamingCall<I, O>({
        interceptors: options.interceptors,
        signal,
        timeoutMs: c.timeoutMs,
        req: { ...c.req, stream: true, method, message: input },
        next: async (req) => {
          const s = pick();
          s.active++;
          let res: StreamResponse<I, O>;
          try {
            res = await s.transport.stream(
              method,
              req.signal,
              undefined,
              req.header,
              req.message,
              req.contextValues,
            );
          } catch (err) {
            s.active--;
            failed(s, err);
            throw err;
          }
          // In flight until the response stream is read to its end, or the call is cancelled
          // (an abandoned stream's signal aborts), whichever comes first, counted once.
          let counted = true;
          const done = () => {
            if (!counted) return;
            counted = false;
            s.active--;
            req.signal.removeEventListener("abort", done);
          };
          req.signal.addEventListener("abort", done, { once: true });
          const inner = res.message;
          return {
            ...res,
            message: (async function* () {
              try {
                yield* inner;
                succeeded(s);
              } catch (err) {
                failed(s, err);
                throw err;
              } finally {
                done();
              }
            })(),
          };
        },
      });
    },
    inFlight: () => Object.fromEntries([...perEndpoint].map(([url, s]) => [url, s.active])),
    outliers: () => {
      const now = Date.now();
      return Object.fromEntries(
        [...perEndpoint].map(([url, s]) => [
          url,
          {
            ejected: isEjected(s.outlier, now),
            ejectedForMs: Math.max(0, s.outlier.ejectedUntil - now),
            ejections: s.outlier.ejections,
          },
        ]),
      );
    },
    close() {
      unsubscribe();
      for (const slot of perEndpoint.values()) slot.sessions.abort();
      perEndpoint.clear();
    },
  } as BalancedTransport;
}
