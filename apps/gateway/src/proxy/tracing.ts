import type http2 from "node:http2";
import { codeFromHttpStatus, codeFromString } from "@connectrpc/connect/protocol-connect";
import {
  type ClientMethodMetrics,
  type ClientMetrics,
  endClientSpan,
  recordsSpans,
  rpcClientAttributes,
} from "@meshwork/telemetry";
import {
  type Attributes,
  type Context,
  propagation,
  type Span,
  SpanKind,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { Code, type Protocol } from "../errors.js";
import type { Route } from "../routes.js";
import type { Endpoint } from "../upstreams.js";
import { traceSetter } from "./headers.js";

/** What the spans and client metrics of one method say, computed on its first call. */
interface MethodSpans {
  /** `meshwork.users.v1.UserService/GetUser`, as the RPC semantic conventions name spans. */
  name: string;
  service: string;
  method: string;
  grpc: Attributes;
  connect: Attributes;
  /** Its `rpc.client.*` recorders, per protocol, made on first use. */
  grpcCalls: ClientMethodMetrics | undefined;
  connectCalls: ClientMethodMetrics | undefined;
}

const NO_ROUTE = "gateway (no route)";

function rpcAttributes(system: string, service: string, method: string): Attributes {
  return Object.freeze({ "rpc.system": system, "rpc.service": service, "rpc.method": method });
}

/** `grpc` for gRPC and gRPC-Web, `connect_rpc` for the Connect protocol (the conventions' values). */
function isGrpc(protocol: Protocol): boolean {
  return protocol === "grpc" || protocol === "grpc-web";
}

/**
 * The gateway's spans and client metrics, by the OpenTelemetry RPC conventions: the SERVER span
 * of a call is named after its method, and each attempt upstream (each retry too) is a CLIENT
 * span under it, whose context is the `traceparent` the upstream gets, and is counted and timed
 * as `rpc.client.requests` / `rpc.client.duration`. The CLIENT spans and the metrics are those of
 * `@meshwork/telemetry`'s client interceptor (its attributes, its end, its instruments), which
 * the gateway cannot run as such: it forwards frames, not messages. Only methods of the contract
 * are remembered (a bounded table); any other path gets a fixed name, so span names stay few.
 */
export class ProxySpans {
  readonly #methods = new Map<string, MethodSpans>();
  /**
   * The tracer is the id-only one (nothing exported): its spans never record, and a call's
   * `traceparent` is written from its span's ids (`injectIds`) without a context per call.
   */
  readonly idsOnly: boolean;

  constructor(
    readonly tracer: Tracer,
    /** Where `rpc.client.*` are recorded (the gateway's telemetry); none: attempts are not measured. */
    readonly clientMetrics?: ClientMetrics,
  ) {
    this.idsOnly = !recordsSpans(tracer);
  }

  #method(route: Route | undefined, pathKey: string): MethodSpans | undefined {
    if (!route) return undefined;
    let m = this.#methods.get(pathKey);
    if (m) return m;
    const method = pathKey.slice(route.prefix.length);
    if (!route.methods.includes(method)) return undefined;
    m = {
      name: `${route.service}/${method}`,
      service: route.service,
      method,
      grpc: rpcAttributes("grpc", route.service, method),
      connect: rpcAttributes("connect_rpc", route.service, method),
      grpcCalls: undefined,
      connectCalls: undefined,
    };
    this.#methods.set(pathKey, m);
    return m;
  }

  /** The call's SERVER span; its attributes only when it records (nothing is built otherwise). */
  server(
    parent: Context,
    route: Route | undefined,
    pathKey: string,
    protocol: Protocol,
    httpMethod: string,
    path: string,
  ): Span {
    const m = this.#method(route, pathKey);
    const name = m?.name ?? (route ? `gateway ${route.service}` : NO_ROUTE);
    const span = this.tracer.startSpan(name, { kind: SpanKind.SERVER }, parent);
    if (span.isRecording()) {
      if (m) span.setAttributes(isGrpc(protocol) ? m.grpc : m.connect);
      span.setAttribute("http.request.method", httpMethod);
      span.setAttribute("url.path", path);
    }
    return span;
  }

  /**
   * The `rpc.client.*` recorders of the method at `pathKey` in `protocol`; undefined for a path
   * that is not a method of the contract, or without client metrics. Allocates only once per
   * method and protocol.
   */
  calls(route: Route, pathKey: string, protocol: Protocol): ClientMethodMetrics | undefined {
    const metrics = this.clientMetrics;
    if (!metrics) return undefined;
    const m = this.#method(route, pathKey);
    if (!m) return undefined;
    if (isGrpc(protocol)) {
      m.grpcCalls ??= metrics.named(m.service, m.method, true);
      return m.grpcCalls;
    }
    m.connectCalls ??= metrics.named(m.service, m.method, false);
    return m.connectCalls;
  }

  /**
   * A CLIENT span for one attempt on `endpoint`, child of the call's span in `ctx`, its context
   * written into the attempt's `headers` (`traceparent`, `tracestate`, `baggage`). Only called
   * when the call's span records: otherwise the call's own context went into the headers once.
   */
  attempt(
    ctx: Context,
    route: Route,
    pathKey: string,
    protocol: Protocol,
    endpoint: Endpoint,
    attempt: number,
    headers: http2.OutgoingHttpHeaders,
  ): Span {
    const m = this.#method(route, pathKey);
    const colon = endpoint.authority.lastIndexOf(":");
    const attributes = rpcClientAttributes(
      route.service,
      m?.method ?? pathKey.slice(route.prefix.length),
      isGrpc(protocol),
      endpoint.authority.slice(0, colon).replace(/^\[|\]$/g, ""),
      Number(endpoint.authority.slice(colon + 1)),
    );
    attributes["meshwork.attempt"] = attempt;
    const span = this.tracer.startSpan(
      m?.name ?? `gateway ${route.service}`,
      { kind: SpanKind.CLIENT, attributes },
      ctx,
    );
    propagation.inject(trace.setSpan(ctx, span), headers, traceSetter);
    return span;
  }
}

/** Why an attempt ended without an answer: a low-cardinality type and the detail. */
export interface AttemptFailure {
  /** `connect` (no stream opened), `lost` (reset, error, cut short) or `cancelled` (given up). */
  type: "connect" | "lost" | "cancelled";
  message: string;
}

/**
 * The status code of an attempt, as its caller would see it: for gRPC (and gRPC-Web) the
 * answer's `grpc-status`; for the Connect protocol OK on HTTP 200, else the code of the
 * answer's error body (`connectCode`), else the one Connect derives from the HTTP status. An
 * attempt lost before its status is UNAVAILABLE, one given up CANCELLED.
 */
export function attemptCode(
  protocol: Protocol,
  grpcStatus: string | undefined,
  httpStatus: number,
  failure: AttemptFailure | undefined,
  connectCode: Code | undefined,
): number {
  if (isGrpc(protocol) && grpcStatus !== undefined) return Number(grpcStatus);
  if (failure) return failure.type === "cancelled" ? Code.Canceled : Code.Unavailable;
  if (isGrpc(protocol)) return 0;
  if (httpStatus === 200) return 0;
  return connectCode ?? codeFromHttpStatus(httpStatus);
}

/**
 * The code in a Connect error body's first bytes (`{"code":"not_found",...}`), or when it names
 * none, the one Connect derives from the answer's HTTP status.
 */
export function connectErrorCode(chunk: Buffer, httpStatus: number): Code {
  const text = chunk.toString("utf8", 0, Math.min(chunk.length, 512));
  const m = /"code"\s*:\s*"([a-z_]+)"/.exec(text);
  return (m && codeFromString(m[1] as string)) ?? codeFromHttpStatus(httpStatus);
}

/**
 * Ends an attempt's CLIENT span with its `code` (see {@link attemptCode}), as every client of
 * the mesh ends one (`endClientSpan`), plus `http.response.status_code` and, for an attempt
 * that got no answer, `error.type` = how it was lost.
 */
export function endAttemptSpan(
  span: Span,
  protocol: Protocol,
  code: number,
  httpStatus: number,
  failure: AttemptFailure | undefined,
): void {
  if (httpStatus > 0) span.setAttribute("http.response.status_code", httpStatus);
  endClientSpan(span, isGrpc(protocol), code, failure?.message, failure?.type);
}
