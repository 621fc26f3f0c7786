import { ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  type Attributes,
  context,
  propagation,
  type Span,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  type TextMapSetter,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CBaggagePropagator } from "@opentelemetry/core";
import {
  type ClientMethodMetrics,
  type ClientMetricsSource,
  clientMetricsOf,
  codeName,
  hasBoundInstruments,
} from "./client-metrics.js";
import { IdOnlyTracer } from "./id-tracer.js";
import { scrubText } from "./log-safety.js";
import { onStreamEnd } from "./stream-end.js";
import { processTelemetry, processTracer } from "./telemetry.js";

const headerSetter: TextMapSetter<Headers> = { set: (carrier, key, value) => carrier.set(key, value) };
const baggagePropagator = new W3CBaggagePropagator();
const CLIENT: SpanOptions = Object.freeze({ kind: SpanKind.CLIENT });

/** What a CLIENT span of one method on one endpoint says, computed on its first call. */
interface Route {
  spanName: string;
  grpc: boolean;
  attrs: Attributes;
}

function routeOf(url: string, service: string, method: string, grpc: boolean): Route {
  const u = new URL(url);
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port);
  return {
    spanName: `${service}/${method}`,
    grpc,
    attrs: rpcClientAttributes(service, method, grpc, host, port),
  };
}

/**
 * What a CLIENT span of one RPC says at its start, by the OpenTelemetry RPC conventions: the
 * protocol (`grpc`, or `connect_rpc` for the Connect protocol), the method, and the endpoint
 * actually called (`server.address` without IPv6 brackets, `server.port`). Its name is
 * `<service>/<method>`. Shared by every client of the mesh: the interceptor and the gateway.
 */
export function rpcClientAttributes(
  service: string,
  method: string,
  grpc: boolean,
  address: string,
  port: number,
): Attributes {
  return {
    "rpc.system": grpc ? "grpc" : "connect_rpc",
    "rpc.service": service,
    "rpc.method": method,
    "server.address": address,
    "server.port": port,
  };
}

/**
 * Ends a CLIENT span with the call's status `code` (0 when it succeeded): `rpc.grpc.status_code`
 * for gRPC, `rpc.connect_rpc.error_code` for a failed Connect call, and on failure `error.type`
 * (`errorType`, or the code's name) and an ERROR status with `message`.
 */
export function endClientSpan(
  span: Span,
  grpc: boolean,
  code: number,
  message?: string,
  errorType?: string,
): void {
  if (span.isRecording()) {
    if (grpc) span.setAttribute("rpc.grpc.status_code", code);
    else if (code !== 0) span.setAttribute("rpc.connect_rpc.error_code", codeName(code));
    if (code !== 0) {
      const type = errorType ?? codeName(code);
      span.setAttribute("error.type", type);
      // Scrubbed like a log line: a local failure's text (a driver's, a dependency's) may quote
      // a statement's parameters or a token, and the status leaves the process over OTLP.
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: message === undefined ? type : scrubText(message),
      });
    }
  }
  span.end();
}

/**
 * The client half of distributed tracing and of RED metrics, for every transport of the mesh:
 * each call (each attempt, when it runs inside a retry policy) sends the active context's W3C
 * `traceparent`, `tracestate` and `baggage` headers, and is a CLIENT span, child of the caller's
 * span, with the OpenTelemetry RPC conventions (`rpc.system` = `grpc` or `connect_rpc` by the
 * request's content type, `rpc.service`, `rpc.method`, `server.address`, `server.port`, then
 * `rpc.grpc.status_code` or `rpc.connect_rpc.error_code`) and an ERROR status when it fails.
 * Streaming calls end their span when the response stream ends.
 *
 * Each call is also counted and timed: `rpc.client.requests` and `rpc.client.duration` (see
 * `client-metrics.ts`), exported with the telemetry given (a whole {@link Telemetry}, whatever
 * type the caller declares) or, without one, the process's ({@link startTelemetry}); with
 * neither, calls are not measured.
 *
 * Put it last in a transport's interceptors (closest to the network) so that a retry policy
 * outside it makes one span per attempt. Spans come from `telemetry.tracer`; without it, from
 * {@link processTracer} (the service's, in a process whose telemetry `startTelemetry` started).
 *
 * With the id-only tracer (a process that exports nothing) no span object is built: the call
 * gets a span id of its own and its `traceparent` is written directly (the W3C format, whatever
 * propagator is installed), so the trace goes on downstream at the cost of two ids and a string.
 */
export function createClientTracingInterceptor(
  telemetry?: { tracer: Tracer } & Partial<ClientMetricsSource>,
): Interceptor {
  const own = telemetry?.tracer;
  const ownMetrics = hasBoundInstruments(telemetry) ? clientMetricsOf(telemetry) : undefined;
  // By URL (endpoint and method), one map per protocol; bounded, as interceptors may rewrite URLs.
  const grpcRoutes = new Map<string, Route>();
  const connectRoutes = new Map<string, Route>();

  return (next) => (req) => {
    const ctx = context.active();
    const tracer = own ?? processTracer();
    const grpc = req.header.get("content-type")?.startsWith("application/grpc") ?? false;
    const source = ownMetrics ?? metricsOfProcess();
    const metrics = source?.method(req.service.typeName, req.method, grpc);
    if (tracer instanceof IdOnlyTracer) {
      const sc = tracer.spanContextFor(req.method.name, CLIENT, ctx);
      req.header.set("traceparent", `00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags & TraceFlags.SAMPLED}`);
      if (sc.traceState) req.header.set("tracestate", sc.traceState.serialize());
      if (propagation.getBaggage(ctx)) baggagePropagator.inject(ctx, req.header, headerSetter);
      if (!metrics) return next(req);
      return measured(next, req, metrics, undefined, undefined);
    }
    const routes = grpc ? grpcRoutes : connectRoutes;
    let route = routes.get(req.url);
    if (!route) {
      route = routeOf(req.url, req.service.typeName, req.method.name, grpc);
      if (routes.size >= 1024) routes.clear();
      routes.set(req.url, route);
    }
    const span = tracer.startSpan(route.spanName, { kind: SpanKind.CLIENT, attributes: route.attrs }, ctx);
    propagation.inject(trace.setSpan(ctx, span), req.header, headerSetter);
    return measured(next, req, metrics, span, route);
  };
}

/** The client instruments of the process's telemetry, once {@link startTelemetry} made one. */
function metricsOfProcess() {
  const t = processTelemetry();
  return t ? clientMetricsOf(t) : undefined;
}

type Next = Parameters<Interceptor>[0];
type Req = Parameters<Next>[0];

/** Runs the call; when it ends (its response stream, for a stream), ends its span and counts it. */
function measured(
  next: Next,
  req: Req,
  metrics: ClientMethodMetrics | undefined,
  span: Span | undefined,
  route: Route | undefined,
): ReturnType<Next> {
  const started = performance.now();
  const end = (err?: unknown) => {
    if (metrics) {
      const code = err === undefined ? 0 : ConnectError.from(err).code;
      metrics.record(code, (performance.now() - started) / 1000);
    }
    if (span && route) finish(span, route, err);
  };
  let pending: ReturnType<Next>;
  try {
    pending = next(req);
  } catch (err) {
    end(err);
    throw err;
  }
  return pending.then(
    (res) => {
      if (res.stream) return onStreamEnd(res, end);
      end();
      return res;
    },
    (err: unknown) => {
      end(err);
      throw err;
    },
  ) as ReturnType<Next>;
}

function finish(span: Span, route: Route, err?: unknown): void {
  if (err === undefined) {
    endClientSpan(span, route.grpc, 0);
    return;
  }
  const error = ConnectError.from(err);
  endClientSpan(span, route.grpc, error.code, error.rawMessage);
}
