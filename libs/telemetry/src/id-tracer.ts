import {
  type Context,
  context,
  isSpanContextValid,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
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
