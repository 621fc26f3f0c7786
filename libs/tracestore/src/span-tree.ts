import type { StoredSpan, StoredTrace } from "./model.js";
import { compareNano } from "./trace-store.js";

/** One row of a drawn trace: a span, how deep it sits, and what joins it to the row above it. */
export interface SpanRow {
  span: StoredSpan;
  /** 0 for a root. */
  depth: number;
  /**
   * `root`: no parent in the trace; `parent`: under its parent span; `link`: under the span it
   * links to (a hop through NATS whose consumer span starts from a link, in this or another trace).
   */
  via: "root" | "parent" | "link";
}

/**
 * Orders a trace's spans for drawing: depth first, siblings by start time, each span under its
 * parent, or, when its parent is not in the trace, under the first span it links to. Spans of
 * other traces that link into this one (`trace.linked`) hang under the span they link to.
 */
export function spanRows(trace: StoredTrace): SpanRow[] {
  const all = [...trace.spans, ...(trace.linked ?? [])];
  const byId = new Map(all.map((s) => [s.spanId, s]));
  const children = new Map<string, Array<{ span: StoredSpan; via: "parent" | "link" }>>();
  const roots: StoredSpan[] = [];
  for (const s of all) {
    let anchor: { id: string; via: "parent" | "link" } | undefined;
    if (s.parentSpanId && byId.has(s.parentSpanId) && s.parentSpanId !== s.spanId) {
      anchor = { id: s.parentSpanId, via: "parent" };
    } else {
      const link = s.links.find((l) => l.spanId !== s.spanId && byId.has(l.spanId));
      if (link) anchor = { id: link.spanId, via: "link" };
    }
    if (!anchor) {
      roots.push(s);
      continue;
    }
    const list = children.get(anchor.id);
    if (list) list.push({ span: s, via: anchor.via });
    else children.set(anchor.id, [{ span: s, via: anchor.via }]);
  }
  const rows: SpanRow[] = [];
  const seen = new Set<string>();
  const visit = (span: StoredSpan, depth: number, via: SpanRow["via"]) => {
    if (seen.has(span.spanId)) return;
    seen.add(span.spanId);
    rows.push({ span, depth, via });
    const kids = (children.get(span.spanId) ?? []).sort((a, b) =>
      compareNano(a.span.startTimeUnixNano, b.span.startTimeUnixNano),
    );
    for (const k of kids) visit(k.span, depth + 1, k.via);
  };
  for (const r of roots.sort((a, b) => compareNano(a.startTimeUnixNano, b.startTimeUnixNano)))
    visit(r, 0, "root");
  // Spans caught in a cycle of links have no root: draw them at the top level rather than lose them.
  for (const s of all) if (!seen.has(s.spanId)) visit(s, 0, "root");
  return rows;
}
