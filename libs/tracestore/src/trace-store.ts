import type { AttributeValue, StoredLink, StoredSpan, StoredTrace, TraceSummary } from "./model.js";
import { decodeEncodedSpan, type EncodedSpan } from "./otlp.js";

/** Limits of a {@link TraceStore}. */
export interface TraceStoreOptions {
  /** At most this many traces are kept (default 1000). */
  maxTraces?: number;
  /**
   * At most about this many bytes of spans are kept (default 64 MiB), counted as their JSON size
   * for spans added decoded, as their protobuf size plus their resource's for spans kept encoded.
   */
  maxBytes?: number;
}

/** What {@link TraceStore.add} did with a batch of spans. */
export interface AddResult {
  accepted: number;
  /** Spans refused because their trace alone would exceed `maxBytes`. */
  rejected: number;
}

/** Counters of a {@link TraceStore}, for status pages and tests. */
export interface TraceStoreStats {
  traces: number;
  spans: number;
  bytes: number;
  /** Traces dropped so far to stay within the limits. */
  evictedTraces: number;
  /** Spans refused so far (see {@link AddResult.rejected}). */
  rejectedSpans: number;
}

/** A query by attribute: spans whose attribute `key` equals `value` (compared as strings). */
export interface AttributeQuery {
  key: string;
  value: string;
}

/**
 * A span as kept, itself (no wrapper object per span): decoded (added as a {@link StoredSpan}) or
 * encoded (an {@link EncodedSpan}, decoded when read).
 */
type Kept = StoredSpan | EncodedSpan;

function isEncoded(kept: Kept): kept is EncodedSpan {
  return (kept as Partial<EncodedSpan>).origin !== undefined;
}

function spanOf(kept: Kept): StoredSpan {
  return isEncoded(kept) ? decodeEncodedSpan(kept) : kept;
}

const NO_LINKS: readonly Pick<StoredLink, "traceId" | "spanId">[] = [];

function linksOf(kept: Kept): readonly Pick<StoredLink, "traceId" | "spanId">[] {
  return kept.links ?? NO_LINKS;
}

interface Entry {
  traceId: string;
  /**
   * The trace's spans: the one span of a trace of one span (every call of a server whose callers
   * send no trace context), or a Map by span id once a second span arrives.
   */
  spans: Kept | Map<string, Kept>;
  bytes: number;
  summary: TraceSummary | undefined;
  /** The last batch ({@link TraceStore} counts them) that added a span: evicted last in it. */
  batch: number;
}

function spanCountOf(entry: Entry): number {
  return entry.spans instanceof Map ? entry.spans.size : 1;
}

function keptSpans(entry: Entry): Kept[] {
  return entry.spans instanceof Map ? [...entry.spans.values()] : [entry.spans];
}

function keptWithId(entry: Entry, spanId: string): Kept | undefined {
  if (entry.spans instanceof Map) return entry.spans.get(spanId);
  return entry.spans.spanId === spanId ? entry.spans : undefined;
}

/** Puts `kept` in its trace, in place of the span with its id if there is one. */
function putSpan(entry: Entry, kept: Kept): void {
  const { spans } = entry;
  if (spans instanceof Map) spans.set(kept.spanId, kept);
  else if (spans.spanId === kept.spanId) entry.spans = kept;
  else
    entry.spans = new Map<string, Kept>([
      [spans.spanId, spans],
      [kept.spanId, kept],
    ]);
}

/** What an encoded span is counted for against `maxBytes`. */
function encodedBytes(span: EncodedSpan): number {
  return span.size + span.origin.resourceBytes + ENCODED_OVERHEAD;
}

/** The sizes of decoded spans, measured as JSON once when added. */
const decodedBytes = new WeakMap<StoredSpan, number>();

function keptBytes(kept: Kept): number {
  return isEncoded(kept) ? encodedBytes(kept) : (decodedBytes.get(kept) ?? spanBytes(kept));
}

/**
 * The recent traces of a mesh, in memory: spans grouped by trace id, bounded by a number of
 * traces and a number of bytes. When either bound is passed the oldest trace (the one whose
 * first span arrived first) is dropped whole, so what remains is always whole traces. A span
 * that arrives twice (an exporter's retry) replaces the first copy.
 *
 * Not safe for anything but a single-threaded caller (it is not meant to be shared across
 * workers); queries are linear in the number of traces, which is fine for the few thousand a
 * developer's machine keeps.
 */
export class TraceStore {
  readonly maxTraces: number;
  readonly maxBytes: number;
  private readonly traces = new Map<string, Entry>();
  private bytes = 0;
  private spanCount = 0;
  private evicted = 0;
  private rejected = 0;
  /** Batches added so far: the number of the current one. */
  private batches = 0;

  constructor(options: TraceStoreOptions = {}) {
    this.maxTraces = options.maxTraces ?? 1000;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!(this.maxTraces >= 1) || !(this.maxBytes >= 1)) throw new RangeError("limits must be at least 1");
  }

  /** Adds decoded spans, then drops the oldest traces until both limits hold again. */
  add(spans: readonly StoredSpan[]): AddResult {
    for (const span of spans) decodedBytes.set(span, spanBytes(span));
    return this.#addAll(spans);
  }

  /**
   * Adds spans as the receiver read them from a protobuf request, kept encoded until read (see
   * `encodedSpansFromProtobuf`), then drops the oldest traces until both limits hold again.
   */
  addEncoded(spans: readonly EncodedSpan[]): AddResult {
    return this.#addAll(spans);
  }

  /**
   * Stores each span as it is (this runs once per span received: no object per span besides a
   * trace's entry, and a Map only for a trace of more than one span), then evicts.
   */
  #addAll(spans: readonly Kept[]): AddResult {
    const batch = ++this.batches;
    let accepted = 0;
    let rejected = 0;
    for (const span of spans) {
      const bytes = keptBytes(span);
      let entry = this.traces.get(span.traceId);
      const previous = entry && keptWithId(entry, span.spanId);
      const previousBytes = previous ? keptBytes(previous) : 0;
      if ((entry?.bytes ?? 0) - previousBytes + bytes > this.maxBytes) {
        rejected++;
        continue;
      }
      if (!entry) {
        entry = { traceId: span.traceId, spans: span, bytes: 0, summary: undefined, batch };
        this.traces.set(span.traceId, entry);
      } else {
        putSpan(entry, span);
        entry.summary = undefined;
        entry.batch = batch;
      }
      if (previous) {
        entry.bytes -= previousBytes;
        this.bytes -= previousBytes;
        this.spanCount--;
      }
      entry.bytes += bytes;
      this.bytes += bytes;
      this.spanCount++;
      accepted++;
    }
    this.evict(batch);
    this.rejected += rejected;
    return { accepted, rejected };
  }

  /**
   * Drops oldest traces while a limit is passed; traces of the current batch go last. Runs once
   * per batch (so a store may hold one batch more until it returns), with one pass over the
   * traces in arrival order: a new iterator per dropped trace re-walks the slots of the traces
   * dropped before it, which cost a receiver at the bench's rate more than storing the spans.
   */
  private evict(batch: number): void {
    if (!this.over()) return;
    // First pass: traces this batch did not touch; then, if that was not enough, the batch's own.
    for (let pass = 0; pass < 2; pass++) {
      for (const entry of this.traces.values()) {
        if (!this.over()) return;
        if (pass === 0 && entry.batch === batch) continue;
        this.traces.delete(entry.traceId);
        this.bytes -= entry.bytes;
        this.spanCount -= spanCountOf(entry);
        this.evicted++;
      }
    }
  }

  private over(): boolean {
    return this.traces.size > this.maxTraces || this.bytes > this.maxBytes;
  }

  /**
   * The most recent traces first (by their earliest span's start), at most `limit` (default 20),
   * optionally only those touching `service`.
   */
  listTraces(options: { limit?: number; service?: string } = {}): TraceSummary[] {
    const out: TraceSummary[] = [];
    for (const [id, entry] of this.traces) {
      const summary = this.summaryOf(id, entry);
      if (options.service === undefined || summary.services.includes(options.service)) out.push(summary);
    }
    return newestFirst(out).slice(0, options.limit ?? 20);
  }

  /**
   * One trace with its spans in start order, and the spans of other traces that link into it,
   * or undefined when the store does not hold it.
   */
  getTrace(traceId: string): StoredTrace | undefined {
    const id = traceId.toLowerCase();
    const entry = this.traces.get(id);
    if (!entry) return undefined;
    const spans = keptSpans(entry).map(spanOf);
    // Spans that start in the same nanosecond: a root before the rest.
    spans.sort(
      (a, b) =>
        compareNano(a.startTimeUnixNano, b.startTimeUnixNano) ||
        Number(!!a.parentSpanId) - Number(!!b.parentSpanId),
    );
    const own = new Set(spans.map((s) => s.spanId));
    const linked: StoredSpan[] = [];
    for (const [otherId, other] of this.traces) {
      if (otherId === id) continue;
      for (const kept of keptSpans(other))
        if (linksOf(kept).some((l) => l.traceId === id && own.has(l.spanId))) linked.push(spanOf(kept));
    }
    linked.sort((a, b) => compareNano(a.startTimeUnixNano, b.startTimeUnixNano));
    return { summary: this.summaryOf(id, entry), spans, ...(linked.length ? { linked } : {}) };
  }

  /**
   * Traces with at least one span (or span resource) whose attribute `key` equals `value`,
   * most recent first; several queries match a trace that satisfies any of them.
   */
  findTraces(options: {
    attribute: AttributeQuery | readonly AttributeQuery[];
    limit?: number;
  }): TraceSummary[] {
    const queries = Array.isArray(options.attribute)
      ? (options.attribute as readonly AttributeQuery[])
      : [options.attribute as AttributeQuery];
    const out: TraceSummary[] = [];
    for (const [id, entry] of this.traces) {
      let hit = false;
      for (const kept of keptSpans(entry)) {
        const span = spanOf(kept);
        if (
          queries.some(
            (q) => matches(span.attributes[q.key], q.value) || matches(span.resource[q.key], q.value),
          )
        ) {
          hit = true;
          break;
        }
      }
      if (hit) out.push(this.summaryOf(id, entry));
    }
    return newestFirst(out).slice(0, options.limit ?? 20);
  }

  /** Current sizes and what was dropped so far. */
  stats(): TraceStoreStats {
    return {
      traces: this.traces.size,
      spans: this.spanCount,
      bytes: this.bytes,
      evictedTraces: this.evicted,
      rejectedSpans: this.rejected,
    };
  }

  private summaryOf(traceId: string, entry: Entry): TraceSummary {
    entry.summary ??= summarize(traceId, keptSpans(entry).map(spanOf));
    return entry.summary;
  }
}

/** Builds the summary of a trace from its spans (any order). */
export function summarize(traceId: string, spans: readonly StoredSpan[]): TraceSummary {
  const ids = new Set(spans.map((s) => s.spanId));
  let root: StoredSpan | undefined;
  let earliest: StoredSpan | undefined;
  let start: bigint | undefined;
  let end: bigint | undefined;
  const services = new Set<string>();
  let errorCount = 0;
  for (const s of spans) {
    services.add(s.service);
    if (s.status.code === "error") errorCount++;
    const st = BigInt(s.startTimeUnixNano);
    const en = BigInt(s.endTimeUnixNano);
    if (start === undefined || st < start) {
      start = st;
      earliest = s;
    }
    if (end === undefined || en > end) end = en;
    if (!s.parentSpanId && (!root || compareNano(s.startTimeUnixNano, root.startTimeUnixNano) < 0)) root = s;
  }
  // A trace whose root has not arrived shows the earliest span whose parent is missing.
  const head =
    root ??
    spans
      .filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId))
      .sort((a, b) => compareNano(a.startTimeUnixNano, b.startTimeUnixNano))[0] ??
    earliest;
  return {
    traceId,
    rootName: head?.name ?? "",
    rootService: head?.service ?? "",
    complete: root !== undefined,
    services: [...services].sort(),
    spanCount: spans.length,
    startTimeUnixNano: String(start ?? 0n),
    durationMs: start === undefined || end === undefined ? 0 : Number(end - start) / 1e6,
    status: head?.status.code ?? "unset",
    errorCount,
  };
}

/** Compares two decimal nanosecond strings. */
export function compareNano(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function newestFirst(list: TraceSummary[]): TraceSummary[] {
  return list.sort((a, b) => compareNano(b.startTimeUnixNano, a.startTimeUnixNano));
}

function matches(v: AttributeValue | undefined, want: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === "object") return false;
  return String(v) === want;
}

/**
 * What an encoded span is counted for besides its bytes and its resource's: about what its
 * index entry and the objects around its bytes take.
 */
const ENCODED_OVERHEAD = 160;

/** Each resource's serialised size, measured once: the spans of one export share one object. */
const resourceBytes = new WeakMap<object, number>();

function spanBytes(span: StoredSpan): number {
  // The resource object is shared by the spans of one request; counting it per span
  // overestimates a little, which only makes the bound safer. Its size is measured once per
  // object (serialising it for every span was 9% of a receiver's CPU under load).
  const { resource, ...own } = span;
  let r = resourceBytes.get(resource);
  if (r === undefined) {
    r = JSON.stringify(resource).length;
    resourceBytes.set(resource, r);
  }
  return JSON.stringify(own).length + r + 12; // + `"resource":,`
}
