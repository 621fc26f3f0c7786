import {
  type Attributes,
  type AttributeValue,
  type Context,
  createNoopMeter,
  diag,
  type Exception,
  type HrTime,
  isSpanContextValid,
  type Link,
  SamplingDecision,
  type Span,
  type SpanContext,
  type SpanKind,
  type SpanStatus,
  SpanStatusCode,
  type TimeInput,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import {
  type InstrumentationScope,
  isAttributeValue,
  isTracingSuppressed,
  sanitizeAttributes,
} from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanLimits,
  type SpanProcessor,
  type TimedEvent,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";

/**
 * What a span of the OpenTelemetry SDK's `Tracer` (sdk-trace 2.x) is made from: its sampler,
 * limits, id generator, resource, scope, the provider's span processor (every processor the
 * provider was given, users' own included) and its self-metrics. Read from the tracer, so a
 * lean span is configured exactly as the SDK's own span of that tracer would be.
 */
interface SdkTracerParts {
  _sampler: Sampler;
  _spanLimits: SpanLimits;
  _idGenerator: { generateSpanId(): string; generateTraceId(): string };
  _resource: Resource;
  instrumentationScope: InstrumentationScope;
  _spanProcessor: SpanProcessor;
  _tracerMetrics?: SdkSpanMetrics;
}

/** The SDK tracer's own span metrics (`otel.sdk.span.started`, `otel.sdk.span.live`). */
interface SdkSpanMetrics {
  startSpan(parent: SpanContext | undefined, decision: SamplingDecision): () => void;
  startedSpans?: unknown;
  liveSpans?: unknown;
}

const noopMeter = createNoopMeter();
const NOOP_COUNTER = noopMeter.createCounter("noop").constructor;
const NOOP_UP_DOWN_COUNTER = noopMeter.createUpDownCounter("noop").constructor;

/**
 * The tracer's span metrics when they count anything: undefined when both of its instruments are
 * the API's no-op ones. The SDK's tracer provider gets a meter provider only when it is given one
 * (`NodeSDK` gives it with `OTEL_NODE_EXPERIMENTAL_SDK_METRICS=true`), else a no-op meter, and
 * `startSpan` still builds two attribute objects with computed keys per span for it, for nothing:
 * most of the ~250 bytes per span this saves (of ~900 allocated per lean span started, ended and
 * encoded for export, by V8's sampling heap profiler).
 */
function countingSpanMetrics(metrics: SdkSpanMetrics | undefined): SdkSpanMetrics | undefined {
  if (!metrics) return undefined;
  const noop =
    (metrics.startedSpans as object | undefined)?.constructor === NOOP_COUNTER &&
    (metrics.liveSpans as object | undefined)?.constructor === NOOP_UP_DOWN_COUNTER;
  return noop ? undefined : metrics;
}

function sdkPartsOf(tracer: Tracer): SdkTracerParts | undefined {
  const t = tracer as Partial<SdkTracerParts>;
  if (
    typeof t._sampler?.shouldSample !== "function" ||
    typeof t._spanProcessor?.onEnd !== "function" ||
    typeof t._idGenerator?.generateSpanId !== "function" ||
    t._spanLimits === undefined ||
    t._resource === undefined ||
    t.instrumentationScope === undefined
  ) {
    return undefined;
  }
  return t as SdkTracerParts;
}

/**
 * Whether `sampler` is one of the SDK's own, which read the attributes they are given and never
 * write them (a parent-based sampler counts when every sampler it delegates to is one).
 */
function isSdkSampler(sampler: Sampler): boolean {
  if (
    sampler instanceof AlwaysOnSampler ||
    sampler instanceof AlwaysOffSampler ||
    sampler instanceof TraceIdRatioBasedSampler
  ) {
    return true;
  }
  if (!(sampler instanceof ParentBasedSampler)) return false;
  const parts = sampler as unknown as Record<string, Sampler | undefined>;
  return [
    "_root",
    "_remoteParentSampled",
    "_remoteParentNotSampled",
    "_localParentSampled",
    "_localParentNotSampled",
  ].every((field) => {
    const delegate = parts[field];
    return delegate !== undefined && delegate !== sampler && isSdkSampler(delegate);
  });
}

/** Starts a span of `kind` named `name` with `attributes` (not copied: never mutate them) under `parent`. */
export type LeanSpanStarter = (name: string, kind: SpanKind, attributes: Attributes, parent: Context) => Span;

/**
 * A span starter for the hottest spans (the runtime's SERVER span of every call) that builds less
 * than the SDK's `Tracer.startSpan` and still goes through the same pipeline: the tracer's
 * sampler decides, its id generator makes the ids, its span limits apply, and the span is handed
 * to the provider's span processors (`onStart`, `onEnding`, `onEnd`), so a `BatchSpanProcessor`
 * exports it with the configured exporter and users' own processors see it. What it saves: the
 * start attributes are kept by reference and those set later apart from them (the SDK
 * validates and copies them twice per span), times are two numbers until read (the SDK builds
 * four `[s, ns]` arrays per span), and no status, links or events objects are made until used.
 *
 * Undefined when `tracer` is not the SDK's (the id-only tracer, another implementation): use
 * `tracer.startSpan` then.
 */
export function leanSpanStarter(tracer: Tracer): LeanSpanStarter | undefined {
  const sdk = sdkPartsOf(tracer);
  if (!sdk) return undefined;
  const limits = sdk._spanLimits;
  // A sampler of the user's own may write into the attributes it is given: not the shared,
  // frozen start attributes then, but a copy of them.
  const ownSampler = isSdkSampler(sdk._sampler);
  const spanMetrics = countingSpanMetrics(sdk._tracerMetrics);
  const withinLimits = new WeakMap<Attributes, boolean>();
  /** Whether start attributes can be kept as given: valid, and inside the count and length limits. */
  const keepable = (attributes: Attributes): boolean => {
    let ok = withinLimits.get(attributes);
    if (ok === undefined) {
      const keys = Object.keys(attributes);
      const maxLength = limits.attributeValueLengthLimit ?? Number.POSITIVE_INFINITY;
      ok =
        keys.length <= (limits.attributeCountLimit ?? Number.POSITIVE_INFINITY) &&
        keys.every((k) => {
          const v = attributes[k];
          return k.length > 0 && isAttributeValue(v) && (typeof v !== "string" || v.length <= maxLength);
        });
      withinLimits.set(attributes, ok);
      startAttributeCounts.set(attributes, keys.length);
    }
    return ok;
  };
  return (name, kind, attributes, parent) => {
    if (isTracingSuppressed(parent)) return trace.wrapSpanContext({ ...INVALID_CONTEXT });
    const parentContext = trace.getSpanContext(parent);
    const validParent = parentContext && isSpanContextValid(parentContext) ? parentContext : undefined;
    const spanId = sdk._idGenerator.generateSpanId();
    const traceId = validParent ? validParent.traceId : sdk._idGenerator.generateTraceId();
    // As the SDK's tracer: what a sampler writes into the attributes it is given stays on the span.
    const given = ownSampler ? attributes : { ...attributes };
    // The SDK's samplers read the links they are given: one shared empty list for them.
    const sampled = sdk._sampler.shouldSample(parent, traceId, name, kind, given, ownSampler ? NONE : []);
    const recordEnd = spanMetrics?.startSpan(parentContext, sampled.decision);
    const spanContext: SpanContext = {
      traceId,
      spanId,
      traceFlags:
        sampled.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE,
      traceState: sampled.traceState ?? validParent?.traceState,
    };
    if (sampled.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(spanContext);
    const span = new LeanSpan(sdk, spanContext, name, kind, validParent, recordEnd);
    const extra = sampled.attributes;
    if (
      given === attributes &&
      keepable(attributes) &&
      (extra === undefined || Object.keys(extra).length === 0)
    ) {
      span.baseAttributes = attributes;
      span.attributeCount = -1;
    } else {
      span.setAttributes(sanitizeAttributes(given));
      if (extra) span.setAttributes(sanitizeAttributes(extra));
    }
    sdk._spanProcessor.onStart(span, parent);
    return span;
  };
}

/**
 * How many attributes each shared start attributes object has (counted when first checked), so a
 * span's first `setAttribute` (the status code of every call) counts them without a keys array.
 */
const startAttributeCounts = new WeakMap<Attributes, number>();

const INVALID_CONTEXT: SpanContext = { traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 };
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NONE: never[] = Object.freeze([]) as unknown as never[];
const NO_ATTRIBUTES: Attributes = Object.freeze({});

function msToHrTime(ms: number): HrTime {
  const seconds = Math.trunc(ms / 1000);
  let nanos = Math.round((ms - seconds * 1000) * 1_000_000);
  if (nanos >= 1_000_000_000) return [seconds + 1, nanos - 1_000_000_000];
  if (nanos < 0) nanos = 0;
  return [seconds, nanos];
}

/**
 * A recording span of {@link leanSpanStarter}: a `Span` for instrumentation and a `ReadableSpan`
 * for processors and exporters, with the SDK span's behaviour (limits, ended-span warnings,
 * exception events) and fewer objects.
 */
export class LeanSpan implements Span, ReadableSpan {
  /**
   * The start attributes, kept by reference (every span of a route shares them, frozen): not
   * copied unless {@link attributes} is read after the span set one of its own, so the export
   * can write them as bytes encoded once (see `writeLeanSpan`).
   */
  baseAttributes: Attributes = NO_ATTRIBUTES;
  /** The attributes set on this span itself (all of them when the start ones were not kept). */
  ownAttributes: Record<string, AttributeValue> = NO_ATTRIBUTES as Record<string, AttributeValue>;
  /** Whether an own attribute replaced a start one (then it keeps the start one's place). */
  ownShadowsBase = false;
  /** How many attributes are set, or -1 while only the start ones are (not counted yet). */
  attributeCount = 0;
  links: Link[] = NONE;
  events: TimedEvent[] = NONE;
  status: SpanStatus = UNSET;
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  droppedLinksCount = 0;
  ended = false;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  /** Wall-clock start, ms since the epoch, and the monotonic clock then: times are derived lazily. */
  readonly startMs: number;
  readonly #startPerf: number;
  /** Wall-clock end, ms since the epoch (0 until ended). */
  endMs = 0;

  constructor(
    readonly sdk: SdkTracerParts,
    readonly context: SpanContext,
    public name: string,
    readonly kind: SpanKind,
    readonly parentSpanContext: SpanContext | undefined,
    readonly recordEnd: (() => void) | undefined,
  ) {
    this.resource = sdk._resource;
    this.instrumentationScope = sdk.instrumentationScope;
    this.startMs = Date.now();
    this.#startPerf = performance.now();
  }

  spanContext(): SpanContext {
    return this.context;
  }

  /**
   * Every attribute, as the SDK's span holds them (start ones first, in their order). Once the
   * span has set one of its own, this is the span's own object, as the SDK's: the start ones are
   * merged into it when first read, so what a processor changes in it before the exporter runs
   * (a redaction in `onEnding`/`onEnd`) is what is exported (the route's attribute bytes are then
   * not used for this span).
   */
  get attributes(): Attributes {
    if (this.baseAttributes === NO_ATTRIBUTES) return this.ownAttributes;
    if (this.attributeCount < 0) return this.baseAttributes;
    this.ownAttributes = { ...this.baseAttributes, ...this.ownAttributes } as Record<string, AttributeValue>;
    this.baseAttributes = NO_ATTRIBUTES;
    this.ownShadowsBase = false;
    return this.ownAttributes;
  }

  get startTime(): HrTime {
    return msToHrTime(this.startMs);
  }

  get endTime(): HrTime {
    return this.ended ? msToHrTime(this.endMs) : [0, 0];
  }

  get duration(): HrTime {
    return this.ended ? msToHrTime(this.endMs - this.startMs) : [-1, -1];
  }

  /** A time input as wall-clock ms, as the SDK's span reads it (performance-relative numbers included). */
  #ms(input: TimeInput | undefined): number {
    if (input === undefined) return this.startMs + (performance.now() - this.#startPerf);
    if (typeof input === "number") {
      return input <= performance.now() ? input + (this.startMs - this.#startPerf) : input;
    }
    if (input instanceof Date) return input.getTime();
    return input[0] * 1000 + input[1] / 1_000_000;
  }

  #isEnded(): boolean {
    if (this.ended) {
      diag.warn(
        `Cannot execute the operation on ended Span {traceId: ${this.context.traceId}, spanId: ${this.context.spanId}}`,
      );
    }
    return this.ended;
  }

  #truncate(value: AttributeValue): AttributeValue {
    const limit = this.sdk._spanLimits.attributeValueLengthLimit;
    if (limit === undefined || limit <= 0 || limit === Number.POSITIVE_INFINITY) return value;
    if (typeof value === "string") return value.length <= limit ? value : value.substring(0, limit);
    if (Array.isArray(value)) {
      return value.map((v) =>
        typeof v === "string" && v.length > limit ? v.substring(0, limit) : v,
      ) as AttributeValue;
    }
    return value;
  }

  setAttribute(key: string, value?: AttributeValue): this {
    if (value == null || this.#isEnded()) return this;
    if (key.length === 0) {
      diag.warn(`Invalid attribute key: ${key}`);
      return this;
    }
    if (!isAttributeValue(value)) {
      diag.warn(`Invalid attribute value set for key: ${key}`);
      return this;
    }
    const base = this.baseAttributes;
    if (this.attributeCount < 0) {
      this.attributeCount = startAttributeCounts.get(base) ?? Object.keys(base).length;
    }
    const inBase = base !== NO_ATTRIBUTES && Object.hasOwn(base, key);
    // Made at the first valid attribute, kept or dropped, as the SDK's span's own object.
    if (this.ownAttributes === NO_ATTRIBUTES) this.ownAttributes = {};
    const isNew = !inBase && !Object.hasOwn(this.ownAttributes, key);
    const countLimit = this.sdk._spanLimits.attributeCountLimit;
    if (isNew && countLimit !== undefined && this.attributeCount >= countLimit) {
      this.droppedAttributesCount++;
      return this;
    }
    if (inBase) this.ownShadowsBase = true;
    this.ownAttributes[key] = this.#truncate(value);
    if (isNew) this.attributeCount++;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key of Object.keys(attributes)) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(name: string, attributesOrStartTime?: Attributes | TimeInput, startTime?: TimeInput): this {
    if (this.#isEnded()) return this;
    const { eventCountLimit, attributePerEventCountLimit } = this.sdk._spanLimits;
    if (eventCountLimit === 0) {
      this.droppedEventsCount++;
      return this;
    }
    if (this.events === NONE) this.events = [];
    if (eventCountLimit !== undefined && this.events.length >= eventCountLimit) {
      this.events.shift();
      this.droppedEventsCount++;
    }
    let time = startTime;
    let attrs: Attributes | undefined;
    if (isTimeInput(attributesOrStartTime)) {
      if (!isTimeInput(time)) time = attributesOrStartTime;
    } else {
      attrs = attributesOrStartTime;
    }
    const { attributes, dropped } = limitAttributes(
      sanitizeAttributes(attrs),
      attributePerEventCountLimit,
      (v) => this.#truncate(v),
    );
    this.events.push({ name, attributes, time: msToHrTime(this.#ms(time)), droppedAttributesCount: dropped });
    return this;
  }

  addLink(link: Link): this {
    if (this.#isEnded()) return this;
    const { linkCountLimit, attributePerLinkCountLimit } = this.sdk._spanLimits;
    if (linkCountLimit === 0) {
      this.droppedLinksCount++;
      return this;
    }
    if (this.links === NONE) this.links = [];
    if (linkCountLimit !== undefined && this.links.length >= linkCountLimit) {
      this.links.shift();
      this.droppedLinksCount++;
    }
    const { attributes, dropped } = limitAttributes(
      sanitizeAttributes(link.attributes),
      attributePerLinkCountLimit,
      (v) => this.#truncate(v),
    );
    const kept: Link = { context: link.context };
    if (Object.keys(attributes).length > 0) kept.attributes = attributes;
    if (dropped > 0) kept.droppedAttributesCount = dropped;
    this.links.push(kept);
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (this.#isEnded() || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) {
      return this;
    }
    this.status =
      status.code === SpanStatusCode.ERROR && typeof status.message === "string"
        ? { code: status.code, message: status.message }
        : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.#isEnded()) this.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.ended) {
      diag.error(
        `${this.name} ${this.context.traceId}-${this.context.spanId} - You can only call end() on a span once.`,
      );
      return;
    }
    this.endMs = Math.max(this.#ms(endTime), this.startMs);
    const processor = this.sdk._spanProcessor;
    processor.onEnding?.(this);
    this.recordEnd?.();
    this.ended = true;
    processor.onEnd(this);
  }

  isRecording(): boolean {
    return !this.ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === "string") {
      attributes["exception.message"] = exception;
    } else if (exception) {
      if (exception.code) attributes["exception.type"] = exception.code.toString();
      else if (exception.name) attributes["exception.type"] = exception.name;
      if (exception.message) attributes["exception.message"] = exception.message;
      if (exception.stack) attributes["exception.stacktrace"] = exception.stack;
    }
    if (attributes["exception.type"] || attributes["exception.message"]) {
      this.addEvent("exception", attributes, time);
    } else {
      diag.warn(`Failed to record an exception ${exception}`);
    }
  }
}

function isTimeInput(value: unknown): value is TimeInput {
  return (
    typeof value === "number" ||
    value instanceof Date ||
    (Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === "number" &&
      typeof value[1] === "number")
  );
}

/** Attributes of an event or link within their count limit, values truncated. */
function limitAttributes(
  sanitized: Attributes,
  limit: number | undefined,
  truncate: (v: AttributeValue) => AttributeValue,
): { attributes: Attributes; dropped: number } {
  const attributes: Attributes = {};
  let kept = 0;
  let dropped = 0;
  for (const key of Object.keys(sanitized)) {
    const value = sanitized[key];
    if (value === undefined) continue;
    if (limit !== undefined && kept >= limit) {
      dropped++;
      continue;
    }
    attributes[key] = truncate(value);
    kept++;
  }
  return { attributes, dropped };
}
