import { create, type DescMessage, isMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createDeadlineSignal,
  createMethodUrl,
  getAbortSignalReason,
  runStreamingCall,
} from "@connectrpc/connect/protocol";
import { type ClientProtocol, DEFAULT_CLIENT_PROTOCOL } from "@meshwork/runtime";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import { ENDPOINT_FAULTS, EndpointPool } from "./endpoint-pool.js";
import type { EndpointTracker } from "./endpoints.js";
import { DEFAULT_OUTLIER_POLICY, type OutlierPolicy } from "./outliers.js";

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
  const { service } = options;
  const protocol = options.protocol ?? DEFAULT_CLIENT_PROTOCOL;
  const pool = new EndpointPool({
    service,
    endpoints: options.endpoints,
    protocol,
    readMaxBytes: options.readMaxBytes,
    telemetry: options.telemetry,
    outliers: options.outliers === false ? undefined : (options.outliers ?? DEFAULT_OUTLIER_POLICY),
    logger: options.logger,
    ejections: options.meter?.createCounter("discovery.outlier.ejections", {
      description:
        "Endpoints ejected from calls between services after consecutive failures, by upstream service",
    }),
  });
  const frame = requestFrame(
    `http://${service}.meshwork.invalid`,
    protocol === "grpc",
    options.defaultTimeoutMs,
  );

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: Parameters<Transport["unary"]>[0] & { input: I; output: O },
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      message: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const c = frame(method, timeoutMs, header, contextValues);
      return runUnary<I, O>(
        options.interceptors,
        signal,
        c.timeoutMs,
        { ...c.req, stream: false, method },
        message,
        (req) => unaryToEndpoint(pool, req),
      );
    },
    async stream<I extends DescMessage, O extends DescMessage>(
      method: Parameters<Transport["stream"]>[0] & { input: I; output: O },
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      const c = frame(method, timeoutMs, header, contextValues);
      return runStreamingCall<I, O>({
        interceptors: options.interceptors,
        signal,
        timeoutMs: c.timeoutMs,
        req: { ...c.req, stream: true, method, message: input },
        next: (req) => streamToEndpoint(pool, req),
      });
    },
    inFlight: () => pool.inFlight(),
    outliers: () => pool.outliers(),
    close: () => pool.close(),
  } as BalancedTransport;
}

type UnaryNext<I extends DescMessage, O extends DescMessage> = (
  req: UnaryRequest<I, O>,
) => Promise<UnaryResponse<I, O>>;

/**
 * connect's `runUnaryCall` (interceptors around `next`, the call's signal aborted by the caller's
 * signal or the deadline, errors as ConnectError, Canceled once the signal aborted) without its
 * abort of the call's signal when the call succeeds: that abort builds a DOMException with its
 * stack on every call (1.4% of orders' busy time, issue 24) and nothing listens to a finished
 * call's signal; the links to the caller's signal and the deadline timer are removed instead.
 */
function runUnary<I extends DescMessage, O extends DescMessage>(
  interceptors: Interceptor[] | undefined,
  callerSignal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  frame: Omit<UnaryRequest<I, O>, "signal" | "message">,
  message: MessageInitShape<I>,
  next: UnaryNext<I, O>,
): Promise<UnaryResponse<I, O>> {
  // Applied per call, as connect does: an interceptor may keep per-call state in its closure.
  const chain = (interceptors ?? []).reduceRight(
    (n, interceptor) => interceptor(n as never) as unknown as UnaryNext<I, O>,
    next,
  );
  const deadline = createDeadlineSignal(timeoutMs);
  const controller = new AbortController();
  const sources = callerSignal ? [callerSignal, deadline.signal] : [deadline.signal];
  function onAbort(this: AbortSignal) {
    if (!controller.signal.aborted) controller.abort(getAbortSignalReason(this));
    unlink();
  }
  const unlink = () => {
    for (const s of sources) s.removeEventListener("abort", onAbort);
  };
  const aborted = sources.find((s) => s.aborted);
  if (aborted) onAbort.call(aborted);
  else for (const s of sources) s.addEventListener("abort", onAbort);
  const signal = controller.signal;
  const input = isMessage(message, frame.method.input) ? message : create(frame.method.input, message);
  return chain({ ...frame, message: input, signal } as UnaryRequest<I, O>).then(
    (res) => {
      deadline.cleanup();
      unlink();
      return res;
    },
    (reason: unknown) => {
      const e = signal.aborted
        ? ConnectError.from(getAbortSignalReason(signal), Code.Canceled)
        : ConnectError.from(reason);
      controller.abort(e);
      deadline.cleanup();
      unlink();
      throw e;
    },
  );
}

/**
 * What a unary and a streaming call share: the deadline, its header, the request's frame (its
 * `url` on `baseUrl`, seen only by interceptors).
 */
function requestFrame(baseUrl: string, grpc: boolean, defaultTimeoutMs: number | undefined) {
  return (
    method: Parameters<Transport["unary"]>[0] | Parameters<Transport["stream"]>[0],
    timeoutMs: number | undefined,
    header: ConstructorParameters<typeof Headers>[0] | undefined,
    contextValues: ContextValues | undefined,
  ) => {
    const t = timeoutMs ?? defaultTimeoutMs;
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
}

/** One attempt of a unary call, on the endpoint the pool picks now. */
async function unaryToEndpoint<I extends DescMessage, O extends DescMessage>(
  pool: EndpointPool,
  req: UnaryRequest<I, O>,
): Promise<UnaryResponse<I, O>> {
  const s = pool.pick();
  s.active++;
  try {
    const res = await s.transport.unary(
      req.method,
      req.signal,
      undefined,
      req.header,
      req.message,
      req.contextValues,
    );
    pool.succeeded(s);
    return res;
  } catch (err) {
    pool.failed(s, err);
    throw err;
  } finally {
    s.active--;
  }
}

/** One attempt of a streaming call, on the endpoint the pool picks now. */
async function streamToEndpoint<I extends DescMessage, O extends DescMessage>(
  pool: EndpointPool,
  req: StreamRequest<I, O>,
): Promise<StreamResponse<I, O>> {
  const s = pool.pick();
  s.active++;
  let res: StreamResponse<I, O>;
  try {
    res = await s.transport.stream(
      req.method,
      req.signal,
      undefined,
      req.header,
      req.message,
      req.contextValues,
    );
  } catch (err) {
    s.active--;
    pool.failed(s, err);
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
        pool.succeeded(s);
      } catch (err) {
        pool.failed(s, err);
        throw err;
      } finally {
        done();
      }
    })(),
  };
}
