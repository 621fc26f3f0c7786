import type { DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
} from "@connectrpc/connect";
import {
  type LeanSpanStarter,
  type Logger,
  leanSpanStarter,
  onStreamEnd,
  requestTimeout,
  scrubText,
  type Telemetry,
  withIncomingDeadline,
} from "@meshwork/telemetry";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
} from "@opentelemetry/api";

const headerGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};

// Codes that mean the server failed, not the client (OpenTelemetry's RPC conventions).
const serverFaults = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/** `not_found` for Code.NotFound: the name Connect uses on the wire. */
export function codeName(code: Code | 0): string {
  if (code === 0) return "ok";
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

type Protocol = "grpc" | "grpc_web" | "connect";

function protocolOf(contentType: string | null): Protocol {
  if (contentType?.startsWith("application/grpc-web")) return "grpc_web";
  if (contentType?.startsWith("application/grpc")) return "grpc";
  return "connect";
}

export interface TelemetryInterceptorOptions {
  /** Spans from its tracer; metrics through its bound instruments (no attribute hashing per call). */
  telemetry: Pick<Telemetry, "tracer" | "createBoundCounter" | "createBoundHistogram">;
  logger: Logger;
}

/**
 * One interceptor for the three signals of every call, so a call pays for one wrapper:
 * - a SERVER span continuing the caller's W3C trace context (`traceparent` header), with `rpc.*`
 *   attributes and the status code, active while the handler runs (so logs, database spans and
 *   outgoing calls join the trace);
 * - RED metrics: `rpc.server.requests` (count by method and code) and `rpc.server.duration`
 *   (histogram, ms);
 * - one log line per call with method, code, protocol and duration (plus `trace_id`/`span_id`
 *   from the logger's mixin). Request and response bodies are never logged.
 * Streaming calls are measured until their response stream ends.
 */
export function createTelemetryInterceptor(options: TelemetryInterceptorOptions): Interceptor {
  const { tracer } = options.telemetry;
  // The SDK's pipeline with fewer objects per call when the tracer is the SDK's (see leanSpanStarter).
  const startSpan: LeanSpanStarter =
    leanSpanStarter(tracer) ??
    ((name, kind, attributes, parent) => tracer.startSpan(name, { kind, attributes }, parent));
  const routeOf = createRouteTable();
  const finish = createFinisher(options);

  return (next) => (req) => {
    const started = performance.now();
    const route = routeOf(req);
    const parent = propagation.extract(ROOT_CONTEXT, req.header, headerGetter);
    const span = startSpan(route.spanName, SpanKind.SERVER, route.attrs, parent);
    let ctx: Context = trace.setSpan(parent, span);
    // The caller's deadline rides in the context, for outgoing calls made by the handler.
    const timeout = requestTimeout(req.header.get("grpc-timeout"), req.header.get("connect-timeout-ms")).ms;
    if (timeout !== undefined) ctx = withIncomingDeadline(ctx, Date.now() + timeout);
    let pending: ReturnType<typeof next>;
    try {
      pending = context.with(ctx, next, undefined, req);
    } catch (err) {
      finish(span, ctx, route, started, err);
      return Promise.reject(err);
    }
    return pending.then(
      (res) => {
        if (res.stream) return measureStream(res, span, ctx, route, started);
        finish(span, ctx, route, started);
        return res;
      },
      (err) => {
        finish(span, ctx, route, started, err);
        throw err;
      },
    );
  };

  /** A streaming call ends when its response stream does; each read runs in the call's context. */
  function measureStream(
    res: StreamResponse,
    span: Span,
    ctx: Context,
    route: Route,
    started: number,
  ): StreamResponse {
    return onStreamEnd(res, (err) => finish(span, ctx, route, started, err), ctx);
  }
}

/** Everything about a (method, protocol) pair that does not change between calls. */
interface Route {
  method: string;
  spanName: string;
  protocol: Protocol;
  probe: boolean;
  attrs: Attributes;
  /** Request counter and duration recorder per status code, bound once. */
  byCode: Map<number, { count: (n?: number) => void; record: (seconds: number) => void }>;
}

/** The route of a call, built on its method's first call in each protocol and kept. */
function createRouteTable(): (req: UnaryRequest | StreamRequest) => Route {
  const routes = new Map<DescMethod, Partial<Record<Protocol, Route>>>();
  return (req) => {
    const protocol = protocolOf(req.header.get("content-type"));
    let perProtocol = routes.get(req.method);
    if (!perProtocol) {
      perProtocol = {};
      routes.set(req.method, perProtocol);
    }
    let route = perProtocol[protocol];
    if (!route) {
      const service = req.service.typeName;
      const methodName = req.method.name;
      route = {
        method: `/${service}/${methodName}`,
        spanName: `${service}/${methodName}`,
        protocol,
        probe: service === "grpc.health.v1.Health",
        // Frozen: every span of the route starts with this very object (see leanSpanStarter).
        attrs: Object.freeze({
          "rpc.system": protocol === "connect" ? "connect_rpc" : "grpc",
          "rpc.service": service,
          "rpc.method": methodName,
        }),
        byCode: new Map(),
      };
      perProtocol[protocol] = route;
    }
    return route;
  };
}

/** Ends a call: its span's code and status, its RED metrics, its log line, then the span's end. */
function createFinisher(
  options: TelemetryInterceptorOptions,
): (span: Span, ctx: Context, route: Route, started: number, err?: unknown) => void {
  const { telemetry, logger } = options;
  const requests = telemetry.createBoundCounter(
    "rpc.server.requests",
    "RPCs served, by service, method and code",
  );
  const duration = telemetry.createBoundHistogram("rpc.server.duration", {
    description: "Time to serve an RPC, from the first interceptor to the last response byte handed over",
    unit: "s",
    boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });

  return (span, ctx, route, started, err) => {
    const error = err === undefined ? undefined : ConnectError.from(err);
    const code = error === undefined ? 0 : error.code;
    const elapsed = performance.now() - started;
    if (span.isRecording()) {
      if (route.protocol === "connect") span.setAttribute("rpc.connect_rpc.error_code", codeName(code));
      else span.setAttribute("rpc.grpc.status_code", code);
      if (error && serverFaults.has(code as Code)) {
        // The status leaves the process over OTLP: scrubbed like a log line, in case a handler put
        // a statement's parameters or a token into a deliberate error's text.
        span.setStatus({ code: SpanStatusCode.ERROR, message: scrubText(error.rawMessage) });
      }
    }
    let perCode = route.byCode.get(code);
    if (!perCode) {
      const attrs = { ...route.attrs, "rpc.code": codeName(code) };
      perCode = { count: requests.bind(attrs), record: duration.bind(attrs) };
      route.byCode.set(code, perCode);
    }
    perCode.count();
    perCode.record(elapsed / 1000);
    const level = serverFaults.has(code as Code) ? "error" : route.probe ? "debug" : "info";
    // The line is built only when it will be written.
    if (logger.isLevelEnabled(level)) {
      const line = {
        method: route.method,
        code: codeName(code),
        protocol: route.protocol,
        duration_ms: Math.round(elapsed * 1000) / 1000,
      };
      // In the call's context, so the line carries its trace and span ids.
      context.with(ctx, () => logger[level](line, "rpc"));
    }
    span.end();
  };
}
