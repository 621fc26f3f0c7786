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
import type { Telemetry } from "@meshwork/telemetry";
import type { EndpointState, EndpointTracker } from "./endpoints.js";

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
}

/** A transport that can also report and close what it opened. */
export interface BalancedTransport extends Transport {
  /** Calls in flight per endpoint URL. */
  inFlight(): Record<string, number>;
  close(): void;
}

/**
 * A transport over every healthy endpoint of one service: each call goes to the endpoint with
 * fewer calls in flight of two picked at random (least-request, "power of two choices"), over
 * one HTTP/2 connection per endpoint. The interceptors (the resilience policy) wrap the whole
 * call, so a retried call chooses its endpoint again. With no healthy endpoint the call fails
 * with UNAVAILABLE naming the service.
 */
export function createBalancedTransport(options: BalancedTransportOptions): BalancedTransport {
  const { service, endpoints } = options;
  const protocol = options.protocol ?? DEFAULT_CLIENT_PROTOCOL;
  const grpc = protocol === "grpc";
  const perEndpoint = new Map<
    string,
    { transport: Transport; sessions: GuardedSessionManager; active: number }
  >();
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
      };
      perEndpoint.set(e.url, s);
    }
    return s;
  };
  const pick = () => {
    const list = endpoints.healthy(service);
    if (list.length === 0) {
      throw new ConnectError(`no healthy endpoint of ${service}`, Code.Unavailable);
    }
    const a = list[Math.floor(Math.random() * list.length)] as EndpointState;
    if (list.length === 1) return slot(a);
    let b = list[Math.floor(Math.random() * (list.length - 1))] as EndpointState;
    if (b === a) b = list[list.length - 1] as EndpointState;
    const sa = slot(a);
    const sb = slot(b);
    return sb.active < sa.active ? sb : sa;
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
            return await s.transport.unary(
              method,
              req.signal,
              undefined,
              req.header,
              req.message,
              req.contextValues,
            );
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
              } finally {
                done();
              }
            })(),
          };
        },
      });
    },
    inFlight: () => Object.fromEntries([...perEndpoint].map(([url, s]) => [url, s.active])),
    close() {
      unsubscribe();
      for (const slot of perEndpoint.values()) slot.sessions.abort();
      perEndpoint.clear();
    },
  } as BalancedTransport;
}
