import type http2 from "node:http2";
import {
  type Attributes,
  type Context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { Code, type Protocol } from "../errors.js";
import type { Route } from "../routes.js";
import type { Endpoint } from "../upstreams.js";
import { traceSetter } from "./headers.js";

/** What the spans of one method say, computed on its first call. */
interface MethodSpans {
  /** `meshwork.users.v1.UserService/GetUser`, as the RPC semantic conventions name spans. */
  name: string;
  grpc: Attributes;
  connect: Attributes;
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
 * The gateway's spans, by the OpenTelemetry RPC conventions: the SERVER span of a call is named
 * after its method, and each attempt upstream (each retry too) is a CLIENT span under it, whose
 * context is the `traceparent` the upstream gets. Only methods of the contract are remembered
 * (a bounded table); any other path gets a fixed name, so span names stay few.
 */
export class ProxySpans {
  readonly #methods = new Map<string, MethodSpans>();

  constructor(readonly tracer: Tracer) {}

  #method(route: Route | undefined, pathKey: string): MethodSpans | undefined {
    if (!route) return undefined;
    let m = this.#methods.get(pathKey);
    if (m) return m;
    const method = pathKey.slice(route.prefix.length);
    if (!route.methods.includes(method)) return undefined;
    m = {
      name: `${route.service}/${method}`,
      grpc: rpcAttributes("grpc", route.service, method),
      connect: rpcAttributes("connect_rpc", route.service, method),
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
    const span = this.tracer.startSpan(
      m?.name ?? `gateway ${route.service}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          ...(m ? (isGrpc(protocol) ? m.grpc : m.connect) : undefined),
          "server.address": endpoint.authority.slice(0, colon).replace(/^\[|\]$/g, ""),
          "server.port": Number(endpoint.authority.slice(colon + 1)),
          "meshwork.attempt": attempt,
        },
      },
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
 * Ends an attempt's CLIENT span with what the upstream answered: `rpc.grpc.status_code` (the
 * trailers' status; UNAVAILABLE for an attempt lost before it, CANCELLED for one given up) for
 * gRPC, `http.response.status_code` for both, and an ERROR status with `error.type` when it failed.
 */
export function endAttemptSpan(
  span: Span,
  protocol: Protocol,
  grpcStatus: string | undefined,
  httpStatus: number,
  failure: AttemptFailure | undefined,
): void {
  if (httpStatus > 0) span.setAttribute("http.response.status_code", httpStatus);
  let errorType: string | undefined;
  if (isGrpc(protocol)) {
    const code =
      grpcStatus !== undefined
        ? Number(grpcStatus)
        : failure?.type === "cancelled"
          ? Code.Canceled
          : failure
            ? Code.Unavailable
            : 0;
    span.setAttribute("rpc.grpc.status_code", code);
    if (code !== 0) errorType = failure?.type ?? Code[code] ?? String(code);
  } else if (failure) {
    errorType = failure.type;
  } else if (httpStatus >= 400) {
    errorType = String(httpStatus);
  }
  if (errorType !== undefined) {
    span.setAttribute("error.type", errorType);
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure?.message ?? errorType });
  }
  span.end();
}
