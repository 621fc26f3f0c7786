import type http2 from "node:http2";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createClientTracingInterceptor, type Telemetry } from "@meshwork/telemetry";
import { createLeanGrpcTransport } from "./grpc-client.js";
import { adoptStreamTable } from "./stream-table.js";

/**
 * The protocol one service speaks to another (and the gateway to a service): both are binary
 * Protobuf over one HTTP/2 connection. `grpc` is the default because a call costs least CPU in
 * all with it (`npm run bench`, "client protocols"): the runtime serves binary unary gRPC on its
 * fast path, and the client sends unary gRPC on its own (`createLeanGrpcTransport`): about 4.1k
 * calls/s end to end from one Node client with 64 calls in flight, against 2.5k for connect-node's
 * gRPC transport and 1.8k for its Connect protocol, on this 2-core machine.
 */
export type ClientProtocol = "grpc" | "connect";

export const DEFAULT_CLIENT_PROTOCOL: ClientProtocol = "grpc";

export interface ClientTransportOptions {
  /** `http://host:port` of the service. */
  baseUrl: string;
  /** Default {@link DEFAULT_CLIENT_PROTOCOL}; services take it from `RPC_CLIENT_PROTOCOL`. */
  protocol?: ClientProtocol;
  /** Run outside the tracing interceptor: a retry policy here makes one CLIENT span per attempt. */
  interceptors?: Interceptor[];
  /**
   * Whose tracer records the calls' CLIENT spans (the calling service's); the global tracer
   * provider's when absent. Trace context is sent either way.
   */
  telemetry?: Pick<Telemetry, "tracer">;
  /** Applied to calls that set no timeout of their own. */
  defaultTimeoutMs?: number;
  /** Largest response message accepted, bytes. */
  readMaxBytes?: number;
  /**
   * To share (or close) the HTTP/2 connection; a {@link GuardedSessionManager} is made per
   * transport otherwise.
   */
  sessionManager?: Http2SessionManager;
}

const guarded = new WeakSet<http2.Http2Session>();
const ignore = () => {};

/**
 * connect-node's HTTP/2 session manager, made safe against a peer's graceful shutdown: when a
 * server sends GOAWAY while the connection is idle, the manager destroys the session with an
 * error and, in the same turn, removes its own error listener, so the error would be an uncaught
 * exception that kills the calling process. Every session this manager opens gets a listener of
 * its own; errors still reach the streams that were open, and the next call reconnects. Each
 * session also keeps its streams in a {@link adoptStreamTable | StreamTable}, as the listener's do.
 */
export class GuardedSessionManager extends Http2SessionManager {
  override async request(
    ...args: Parameters<Http2SessionManager["request"]>
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !guarded.has(session)) {
      guarded.add(session);
      session.on("error", ignore);
      adoptStreamTable(session);
    }
    return stream;
  }
}

/**
 * A transport for calls to another Meshwork service, in the configured protocol. Every call
 * carries the caller's W3C trace context and is a CLIENT span
 * ({@link createClientTracingInterceptor}, innermost, after `interceptors`).
 */
export function createClientTransport(options: ClientTransportOptions): Transport {
  const common = {
    baseUrl: options.baseUrl,
    useBinaryFormat: true,
    interceptors: [...(options.interceptors ?? []), createClientTracingInterceptor(options.telemetry)],
    defaultTimeoutMs: options.defaultTimeoutMs,
    readMaxBytes: options.readMaxBytes,
    sessionManager: options.sessionManager ?? new GuardedSessionManager(options.baseUrl),
  };
  const protocol = options.protocol ?? DEFAULT_CLIENT_PROTOCOL;
  switch (protocol) {
    case "grpc":
      // Unary calls on the lean path; streams through connect-node, on the same connection.
      return createLeanGrpcTransport({ ...common, streams: createGrpcTransport(common) });
    case "connect":
      return createConnectTransport({ ...common, httpVersion: "2" });
    default:
      throw new Error(`unknown client protocol ${JSON.stringify(protocol satisfies never)}`);
  }
}
