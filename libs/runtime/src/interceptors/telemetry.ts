import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "@meshwork/telemetry";
import {
  type Attributes,
  type Context,
  context,
  type Meter,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
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

function protocolOf(contentType: string | null): "grpc" | "grpc_web" | "connect" {
  if (contentType?.startsWith("application/grpc-web")) return "grpc_web";
  if (contentType?.startsWith("application/grpc")) return "grpc";
  return "connect";
}

export interface TelemetryInterceptorOptions {
  tracer: Tracer;
  meter: Meter;
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
  const { tracer, meter, logger } = options;
  const requests = meter.createCounter("rpc.server.requests", {
    description: "RPCs served, by service, method and code",
  });
  const duration = meter.createHistogram("rpc.server.duration", {
    description: "Time to serve an RPC, from the first interceptor to the last response byte handed over",
    unit: "s",
    advice: {
      explicitBucketBoundaries: [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
      ],
    },
  });

  const finish = (
    span: Span,
    attrs: Attributes,
    started: number,
    method: string,
    protocol: string,
    err?: unknown,
  ) => {
    const code = err === undefined ? 0 : ConnectError.from(err).code;
    const name = codeName(code);
    const elapsed = performance.now() - started;
    span.setAttribute(
      protocol === "connect" ? "rpc.connect_rpc.error_code" : "rpc.grpc.status_code",
      protocol === "connect" ? name : code,
    );
    if (serverFaults.has(code as Code)) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: ConnectError.from(err).rawMessage });
    }
    const metricAttrs = { ...attrs, "rpc.code": name };
    requests.add(1, metricAttrs);
    duration.record(elapsed / 1000, metricAttrs);
    const line = { method, code: name, protocol, duration_ms: Math.round(elapsed * 1000) / 1000 };
    if (serverFaults.has(code as Code)) logger.error(line, "rpc");
    else if (attrs["rpc.service"] === "grpc.health.v1.Health")
      logger.debug(line, "rpc"); // probes
    else logger.info(line, "rpc");
    span.end();
  };

  return (next) => async (req) => {
    const started = performance.now();
    const service = req.service.typeName;
    const methodName = req.method.name;
    const method = `/${service}/${methodName}`;
    const protocol = protocolOf(req.header.get("content-type"));
    const attrs: Attributes = {
      "rpc.system": protocol === "connect" ? "connect_rpc" : "grpc",
      "rpc.service": service,
      "rpc.method": methodName,
    };
    const parent = propagation.extract(ROOT_CONTEXT, req.header, headerGetter);
    const span = tracer.startSpan(
      `${service}/${methodName}`,
      { kind: SpanKind.SERVER, attributes: attrs },
      parent,
    );
    const ctx: Context = trace.setSpan(parent, span);
    return context.with(ctx, async () => {
      let res: Awaited<ReturnType<typeof next>>;
      try {
        res = await next(req);
      } catch (err) {
        finish(span, attrs, started, method, protocol, err);
        throw err;
      }
      if (!res.stream) {
        finish(span, attrs, started, method, protocol);
        return res;
      }
      const inner = res.message[Symbol.asyncIterator]();
      let done = false;
      const end = (err?: unknown) => {
        if (done) return;
        done = true;
        finish(span, attrs, started, method, protocol, err);
      };
      // The stream is read after this function returns: run each step in the call's context.
      const message: AsyncIterable<typeof res extends { message: AsyncIterable<infer M> } ? M : never> = {
        [Symbol.asyncIterator]: () => ({
          next: async () => {
            try {
              const r = await context.with(ctx, () => inner.next());
              if (r.done) end();
              return r;
            } catch (err) {
              end(err);
              throw err;
            }
          },
          return: async (value?: unknown) => {
            end(new ConnectError("stream closed by the client", Code.Canceled));
            return (await inner.return?.(value)) ?? { done: true, value: undefined };
          },
        }),
      };
      return { ...res, message } as typeof res;
    });
  };
}
