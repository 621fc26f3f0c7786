import type { Attributes, AttributeValue, HrTime, Link, SpanContext } from "@opentelemetry/api";
import type { InstrumentationScope } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace-base";

/**
 * A protobuf writer for the OTLP trace messages (opentelemetry/proto/trace/v1, common/v1,
 * resource/v1), appending to one growing buffer: an ended span is encoded straight into its
 * batch's bytes, so a batch waiting for export holds no span objects. Nested messages reserve one
 * length byte and move their body when it turns out longer than 127 bytes (rare for a span's
 * parts), so nothing is measured twice.
 */
export class OtlpWriter {
  buf: Buffer;
  pos = 0;

  constructor(capacity = 16 * 1024) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  /** The bytes written so far (a view: copy it before writing more). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  reset(): void {
    this.pos = 0;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** An unsigned varint below 2^53. */
  varint(value: number): void {
    this.ensure(10);
    let v = value;
    while (v > 0x7f) {
      this.buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  /** An int64 varint (negative numbers as ten-byte two's complement), as protobuf writes int64. */
  int64(value: number): void {
    if (value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
      this.varint(value);
      return;
    }
    let v = BigInt.asUintN(64, BigInt(Math.trunc(value)));
    this.ensure(10);
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(value >>> 0, this.pos);
    this.pos += 4;
  }

  double(value: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
  }

  /** Nanoseconds since the epoch of an `[s, ns]` time as fixed64, exactly (beyond 2^53). */
  hrTime(time: HrTime): void {
    this.#nanos(time[0], time[1]);
  }

  /**
   * A wall-clock time in ms since the epoch as fixed64 nanoseconds: the same value as
   * {@link hrTime} of the lean span's `[s, ns]` of it, without the array.
   */
  msTime(ms: number): void {
    const seconds = Math.trunc(ms / 1000);
    const nanos = Math.round((ms - seconds * 1000) * 1_000_000);
    if (nanos >= 1_000_000_000) this.#nanos(seconds + 1, nanos - 1_000_000_000);
    else this.#nanos(seconds, Math.max(nanos, 0));
  }

  #nanos(s: number, ns: number): void {
    const a = (s % 65536) * 1e9 + ns; // < 2^47
    const b = Math.floor(s / 65536) * 1e9; // < 2^47
    const c = (b % 65536) * 65536 + a; // < 2^49
    const lo = c % 4294967296;
    const hi = (Math.floor(b / 65536) + Math.floor(c / 4294967296)) >>> 0;
    this.ensure(8);
    const buf = this.buf;
    const p = this.pos;
    buf[p] = lo;
    buf[p + 1] = lo >>> 8;
    buf[p + 2] = lo >>> 16;
    buf[p + 3] = lo >>> 24;
    buf[p + 4] = hi;
    buf[p + 5] = hi >>> 8;
    buf[p + 6] = hi >>> 16;
    buf[p + 7] = hi >>> 24;
    this.pos = p + 8;
  }

  /** Bytes as they are (fields encoded before). */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** A length-delimited string field. */
  string(field: number, value: string): void {
    this.tag(field, 2);
    const n = value.length;
    if (n < 128) {
      // ASCII (the usual case) is written as it is read; anything else through Buffer.write.
      this.ensure(n + 1);
      const buf = this.buf;
      const start = this.pos;
      let p = start + 1;
      for (let i = 0; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c >= 0x80) {
          p = -1;
          break;
        }
        buf[p++] = c;
      }
      if (p >= 0) {
        buf[start] = n;
        this.pos = p;
        return;
      }
    }
    const len = Buffer.byteLength(value);
    this.varint(len);
    this.ensure(len);
    this.pos += this.buf.write(value, this.pos, "utf8");
  }

  /** A length-delimited field holding the bytes of a hex id (trace or span id). */
  hexId(field: number, hex: string): void {
    const n = hex.length >>> 1;
    this.tag(field, 2);
    this.ensure(n + 1);
    // Locals, not fields, in the loop: a third of this function's time in the span micro-bench.
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = n;
    for (let i = 0; i < 2 * n; i += 2) {
      buf[p++] = (hexDigit(hex.charCodeAt(i)) << 4) | hexDigit(hex.charCodeAt(i + 1));
    }
    this.pos = p;
  }

  /**
   * Starts a nested message of `field`: returns a handle for {@link end} (where its length goes
   * and how many bytes were reserved for it). `reserve` is how many bytes the length is expected
   * to take (1: under 128 bytes, 2: under 16 KiB, 3: under 2 MiB); a length that takes another
   * number is fixed up by moving the body once, so the cheap case is the one guessed right.
   */
  begin(field: number, reserve: 1 | 2 | 3 = 1): number {
    this.tag(field, 2);
    this.ensure(reserve);
    const at = this.pos;
    this.pos += reserve;
    return at * 4 + reserve;
  }

  /** Ends the nested message of `handle` (from {@link begin}), writing its length in the fewest bytes. */
  end(handle: number): void {
    const reserve = handle % 4;
    const at = (handle - reserve) / 4;
    const len = this.pos - at - reserve;
    if (reserve === 1 && len < 128) {
      this.buf[at] = len;
      return;
    }
    let size = 1;
    for (let v = len >>> 7; v > 0; v >>>= 7) size++;
    if (size !== reserve) {
      if (size > reserve) this.ensure(size - reserve);
      this.buf.copy(this.buf, at + size, at + reserve, this.pos);
      this.pos += size - reserve;
    }
    let p = at;
    let v = len;
    while (v > 0x7f) {
      this.buf[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[p] = v;
  }
}

function hexDigit(c: number): number {
  // 0-9, a-f, A-F; anything else reads as garbage bits, as an invalid id would anyway.
  return c <= 57 ? c - 48 : (c | 0x20) - 87;
}

/** 2^63: the first integer int64 cannot hold. */
const INT64_LIMIT = 2 ** 63;

/** An AnyValue message's fields (common/v1). */
function writeAnyValue(w: OtlpWriter, value: AttributeValue | undefined | null): void {
  switch (typeof value) {
    case "string":
      w.string(1, value);
      return;
    case "boolean":
      w.tag(2, 0);
      w.varint(value ? 1 : 0);
      return;
    case "number":
      // An integer outside int64 (|n| >= 2^63) is written as a double: protobuf's int64 writers
      // (the SDK's included) keep its low 64 bits, a wrapped and wrong number.
      if (Number.isInteger(value) && value >= -INT64_LIMIT && value < INT64_LIMIT) {
        w.tag(3, 0);
        w.int64(value);
      } else {
        w.tag(4, 1);
        w.double(value);
      }
      return;
  }
  if (Array.isArray(value)) {
    const array = w.begin(5);
    for (const item of value) {
      const at = w.begin(1);
      writeAnyValue(w, item);
      w.end(at);
    }
    w.end(array);
  }
}

/** `attributes` as repeated KeyValue in `field`. */
export function writeAttributes(w: OtlpWriter, field: number, attributes: Attributes): void {
  for (const key in attributes) {
    const at = w.begin(field);
    w.string(1, key);
    const value = w.begin(2);
    writeAnyValue(w, attributes[key]);
    w.end(value);
    w.end(at);
  }
}

/** Span flags as OTLP defines them: the W3C trace flags, and whether the parent was remote. */
function spanFlags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | 0x100 | (isRemote ? 0x200 : 0);
}

function writeEvent(w: OtlpWriter, event: TimedEvent): void {
  const at = w.begin(11);
  w.tag(1, 1);
  w.hrTime(event.time);
  w.string(2, event.name);
  if (event.attributes) writeAttributes(w, 3, event.attributes);
  if (event.droppedAttributesCount) {
    w.tag(4, 0);
    w.varint(event.droppedAttributesCount);
  }
  w.end(at);
}

function writeLink(w: OtlpWriter, link: Link): void {
  const at = w.begin(13);
  const ctx = link.context;
  w.hexId(1, ctx.traceId);
  w.hexId(2, ctx.spanId);
  const state = ctx.traceState?.serialize();
  if (state) w.string(3, state);
  if (link.attributes) writeAttributes(w, 4, link.attributes);
  if (link.droppedAttributesCount) {
    w.tag(5, 0);
    w.varint(link.droppedAttributesCount);
  }
  w.tag(6, 5);
  w.fixed32(spanFlags(ctx.traceFlags, ctx.isRemote));
  w.end(at);
}

function writeCount(w: OtlpWriter, field: number, count: number): void {
  if (count > 0) {
    w.tag(field, 0);
    w.varint(count);
  }
}

/**
 * One `Span` (trace/v1) as field 2 of a ScopeSpans message, with what the SDK's OTLP transform
 * takes from a `ReadableSpan`: ids, trace state, parent, name, kind, times, attributes, events,
 * links, status, dropped counts and flags.
 */
export function writeSpan(w: OtlpWriter, span: ReadableSpan): void {
  // A span's message is usually 128 bytes to 16 KiB: its length takes two bytes.
  const at = w.begin(2, 2);
  writeIds(w, span);
  writeHead(w, span);
  w.tag(7, 1);
  w.hrTime(span.startTime);
  w.tag(8, 1);
  w.hrTime(span.endTime);
  writeAttributes(w, 9, span.attributes);
  writeRest(w, span);
  w.end(at);
}

/** Fields 1 to 4: trace id, span id, trace state, parent span id. */
function writeIds(w: OtlpWriter, span: ReadableSpan): void {
  const ctx: SpanContext = span.spanContext();
  w.hexId(1, ctx.traceId);
  w.hexId(2, ctx.spanId);
  const state = ctx.traceState?.serialize();
  if (state) w.string(3, state);
  const parent = span.parentSpanContext;
  if (parent?.spanId) w.hexId(4, parent.spanId);
}

/** Fields 5 and 6: name and kind. */
function writeHead(w: OtlpWriter, span: ReadableSpan): void {
  w.string(5, span.name);
  w.tag(6, 0);
  w.varint(span.kind + 1);
}

/** Fields 10 to 16: dropped counts, events, links, status, flags. */
function writeRest(w: OtlpWriter, span: ReadableSpan): void {
  writeCount(w, 10, span.droppedAttributesCount);
  for (const event of span.events) writeEvent(w, event);
  writeCount(w, 12, span.droppedEventsCount);
  for (const link of span.links) writeLink(w, link);
  writeCount(w, 14, span.droppedLinksCount);
  // Always present, as the SDK writes it.
  const status = span.status;
  const s = w.begin(15);
  if (status.message) w.string(2, status.message);
  if (status.code !== 0) {
    w.tag(3, 0);
    w.varint(status.code);
  }
  w.end(s);
  w.tag(16, 5);
  w.fixed32(spanFlags(span.spanContext().traceFlags, span.parentSpanContext?.isRemote));
}

/**
 * A span that keeps its times in ms and its start attributes (shared by every span of a route,
 * frozen) apart from those set later: the lean span.
 */
export interface SplitSpan extends ReadableSpan {
  readonly startMs: number;
  readonly endMs: number;
  readonly baseAttributes: Attributes;
  readonly ownAttributes: Attributes;
  /** Whether an own attribute replaced a start one: then the span is written as any other. */
  readonly ownShadowsBase: boolean;
}

/** The fields every span of one route's start attributes repeats, encoded once. */
interface SpanTemplate {
  name: string;
  kind: number;
  /** Fields 5 (name) and 6 (kind). */
  head: Buffer;
  /** Field 9, once per start attribute. */
  attributes: Buffer;
}

const templates = new WeakMap<Attributes, SpanTemplate>();

/**
 * Whether `attributes` can no longer change: frozen, and so is every array in it (freezing is
 * shallow: a frozen object's array can still be written), and no value is a getter's.
 */
function isImmutable(attributes: Attributes): boolean {
  if (!Object.isFrozen(attributes)) return false;
  for (const d of Object.values(Object.getOwnPropertyDescriptors(attributes))) {
    if (!("value" in d) || (Array.isArray(d.value) && !Object.isFrozen(d.value))) return false;
  }
  return true;
}

/** The template of `span`'s start attributes, if they cannot change (see {@link isImmutable}). */
function templateOf(span: SplitSpan): SpanTemplate | undefined {
  const base = span.baseAttributes;
  let t = templates.get(base);
  if (t === undefined) {
    // Only an object nobody can change may stand for its bytes.
    if (!isImmutable(base)) return undefined;
    const w = new OtlpWriter(512);
    writeHead(w, span);
    const head = Buffer.from(w.bytes());
    w.reset();
    writeAttributes(w, 9, base);
    t = { name: span.name, kind: span.kind, head, attributes: Buffer.from(w.bytes()) };
    templates.set(base, t);
  }
  return t;
}

/**
 * {@link writeSpan} of a lean span, the same message: its name, kind and start attributes copied
 * as bytes encoded for the first span of its route, its times written from ms (no `[s, ns]`
 * arrays). Of ~0.95 µs per span encoded by `writeSpan` (the runtime's SERVER span, 221 bytes),
 * names, keys and values were the largest part (issue 15.8).
 */
export function writeLeanSpan(w: OtlpWriter, span: SplitSpan): void {
  const t = span.ownShadowsBase ? undefined : templateOf(span);
  if (t === undefined) {
    writeSpan(w, span);
    return;
  }
  const at = w.begin(2, 2);
  writeIds(w, span);
  // The name and kind of the route's first span (a span renamed, or of another kind, writes its own).
  if (t.name === span.name && t.kind === span.kind) w.raw(t.head);
  else writeHead(w, span);
  w.tag(7, 1);
  w.msTime(span.startMs);
  w.tag(8, 1);
  w.msTime(span.endMs);
  w.raw(t.attributes);
  writeAttributes(w, 9, span.ownAttributes);
  writeRest(w, span);
  w.end(at);
}

/** A `Resource` message (resource/v1) as field 1 of ResourceSpans, its schema URL as field 3. */
export function writeResource(w: OtlpWriter, resource: Resource): { schemaUrl?: string } {
  const at = w.begin(1);
  writeAttributes(w, 1, resource.attributes);
  w.end(at);
  return { schemaUrl: resource.schemaUrl };
}

/** An `InstrumentationScope` message (common/v1) as field 1 of ScopeSpans. */
export function writeScope(w: OtlpWriter, scope: InstrumentationScope): void {
  const at = w.begin(1);
  w.string(1, scope.name);
  if (scope.version) w.string(2, scope.version);
  w.end(at);
}
