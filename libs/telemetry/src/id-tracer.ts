import {
  type Context,
  context,
  isSpanContextValid,
  propagation,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  type TextMapSetter,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CBaggagePropagator } from "@opentelemetry/core";
import { RandomIdGenerator, type Sampler, SamplingDecision } from "@opentelemetry/sdk-trace-base";

const NO_ATTRIBUTES = Object.freeze({});
const NO_LINKS: never[] = [];

/**
 * The tracer of a process whose spans go nowhere (no exporter, no processor): every span is a
 * non-recording one that still has its own ids in the trace of its parent, and the sampling
 * decision of the configured sampler in its flags. So log lines get their trace and span ids,
 * and the `traceparent` sent downstream continues the trace (a downstream service that exports
 * records its part), but nothing is built that nobody would read: the SDK's span object, with
 * its attributes, time stamps and status, is a large part of a fast call's allocations.
 */
export class IdOnlyTracer implements Tracer {
  readonly #ids = new RandomIdGenerator();
  readonly #sampler: Sampler;

  constructor(sampler: Sampler) {
    this.#sampler = sampler;
  }

  startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
    return trace.wrapSpanContext(this.spanContextFor(name, options, ctx));
  }

  /**
   * The ids and flags a span started with `options` in `ctx` would get, without the span object:
   * for callers that only need to propagate them (the client tracing interceptor's fast path).
   */
  spanContextFor(name: string, options: SpanOptions, ctx: Context): SpanContext {
    const parent = options.root ? undefined : trace.getSpanContext(ctx);
    const inherited = parent && isSpanContextValid(parent) ? parent : undefined;
    const traceId = inherited?.traceId ?? this.#ids.generateTraceId();
    const decision = this.#sampler.shouldSample(
      options.root ? trace.deleteSpan(ctx) : ctx,
      traceId,
      name,
      options.kind ?? SpanKind.INTERNAL,
      options.attributes ?? NO_ATTRIBUTES,
      options.links ?? NO_LINKS,
    ).decision;
    return {
      traceId,
      spanId: this.#ids.generateSpanId(),
      traceFlags: decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE,
      traceState: inherited?.traceState,
    };
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    options: SpanOptions,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    options: SpanOptions,
    ctx: Context,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    a?: SpanOptions | F,
    b?: Context | F,
    c?: F,
  ): ReturnType<F> {
    const fn = (c ?? (typeof b === "function" ? b : typeof a === "function" ? a : undefined)) as F;
    const options = typeof a === "object" ? a : {};
    const parent = typeof b === "object" ? b : context.active();
    const span = this.startSpan(name, options, parent);
    return context.with(trace.setSpan(parent, span), fn as (s: Span) => ReturnType<F>, undefined, span);
  }
}

/**
 * False for the id-only tracer, whose spans are never recorded: instrumentation whose spans only
 * matter when recorded (database statements) skips them altogether. True for any other tracer.
 */
export function recordsSpans(tracer: Tracer): boolean {
  return !(tracer instanceof IdOnlyTracer);
}

const baggagePropagator = new W3CBaggagePropagator();

/**
 * Writes what the process's propagators (W3C trace context and baggage, see
 * `installTelemetryGlobals`) would write for a span of the id-only tracer, `ids` being its
 * {@link Span.spanContext} and `ctx` the context it was started in: `traceparent`, `tracestate`
 * when the trace has one, and `ctx`'s `baggage` when it has any. Without a context holding the
 * span and without the composite propagator's walk: a proxy that forwards a call per span
 * (the gateway, issue 23) spent more on those than on the ids. For a span of another tracer, use
 * `propagation.inject` (another propagator may be installed with it).
 */
export function injectIds<C>(ids: SpanContext, ctx: Context, carrier: C, setter: TextMapSetter<C>): void {
  setter.set(
    carrier,
    "traceparent",
    `00-${ids.traceId}-${ids.spanId}-0${ids.traceFlags & TraceFlags.SAMPLED}`,
  );
  if (ids.traceState) setter.set(carrier, "tracestate", ids.traceState.serialize());
  if (propagation.getBaggage(ctx)) baggagePropagator.inject(ctx, carrier, setter);
}
