import {
  type AttributeValue,
  compareNano,
  type StoredLogLine,
  type StoredTrace,
  spanRows,
  type TraceSummary,
} from "@meshwork/tracestore";
import { renderTable } from "./table.js";

/** Milliseconds as a short human figure: `0.42ms`, `12.34ms`, `123.4ms`, `1.25s`. */
export function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)}s`;
  return `${ms.toFixed(ms < 100 ? 2 : 1)}ms`;
}

function statusText(code: string, message?: string): string {
  if (code === "error") return message ? `ERROR ${message}` : "ERROR";
  return code === "ok" ? "OK" : "-";
}

/** The `meshctl traces` table: most recent first, one row per trace. */
export function renderTraceList(traces: readonly TraceSummary[]): string {
  return renderTable(
    ["TRACE", "STARTED", "ROOT", "SERVICES", "SPANS", "DURATION", "STATUS", "ERRORS"],
    traces.map((t) => [
      t.traceId,
      new Date(Number(BigInt(t.startTimeUnixNano) / 1_000_000n)).toISOString().slice(11, 23),
      `${t.complete ? "" : "(no root yet) "}${t.rootName}`,
      t.services.join(","),
      String(t.spanCount),
      formatMs(t.durationMs),
      statusText(t.status),
      String(t.errorCount),
    ]),
  );
}

/** Options of {@link renderWaterfall}. */
export interface WaterfallOptions {
  /** Characters of the timeline bar (default 40). */
  barWidth?: number;
  /** Longest span column, indentation included; longer names are cut with `…` (default 60). */
  maxNameWidth?: number;
}

function attr(v: AttributeValue | undefined): string {
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/**
 * Draws a trace as a waterfall, one line per span: the span (indented under its parent; `↪`
 * when it hangs under the span it links to, as an event consumer does under the publisher),
 * its service, start offset from the trace's start, a bar on the trace's timeline, its
 * duration and status. Events go on lines beneath their span, exceptions with type and message.
 * A pure function of the trace, so its output can be checked line by line.
 */
export function renderWaterfall(trace: StoredTrace, options: WaterfallOptions = {}): string[] {
  const barWidth = options.barWidth ?? 40;
  const maxName = options.maxNameWidth ?? 60;
  const rows = spanRows(trace);
  const all = rows.map((r) => r.span);
  if (all.length === 0) return [`trace ${trace.summary.traceId}: no spans`];
  const start = all.reduce(
    (m, s) => (compareNano(s.startTimeUnixNano, m) < 0 ? s.startTimeUnixNano : m),
    all[0]!.startTimeUnixNano,
  );
  const end = all.reduce(
    (m, s) => (compareNano(s.endTimeUnixNano, m) > 0 ? s.endTimeUnixNano : m),
    all[0]!.endTimeUnixNano,
  );
  const t0 = BigInt(start);
  const total = Number(BigInt(end) - t0) / 1e6;
  const offsetMs = (nano: string) => Number(BigInt(nano) - t0) / 1e6;

  const label = (r: (typeof rows)[number]) => {
    const other = r.span.traceId !== trace.summary.traceId ? ` [trace ${r.span.traceId.slice(0, 8)}]` : "";
    return `${"  ".repeat(r.depth)}${r.via === "link" ? "↪ " : ""}${r.span.name}${other}`;
  };
  const cut = (s: string, w: number) => (s.length > w ? `${s.slice(0, w - 1)}…` : s);
  const nameWidth = Math.min(maxName, Math.max(4, ...rows.map((r) => label(r).length)));
  const serviceWidth = Math.max(7, ...all.map((s) => s.service.length));
  const bar = (from: number, ms: number) => {
    if (total <= 0) return "█".repeat(barWidth);
    const a = Math.min(barWidth - 1, Math.floor((from / total) * barWidth));
    const len = Math.max(1, Math.min(barWidth - a, Math.round((ms / total) * barWidth)));
    return `${" ".repeat(a)}${"█".repeat(len)}${" ".repeat(barWidth - a - len)}`;
  };

  const s = trace.summary;
  const lines = [
    `trace ${s.traceId}  ${s.rootName}  ${s.spanCount} spans  ${s.services.length} services  ${formatMs(s.durationMs)}  ${statusText(s.status)}${s.errorCount ? `  ${s.errorCount} ${s.errorCount === 1 ? "error" : "errors"}` : ""}`,
    `${"SPAN".padEnd(nameWidth)}  ${"SERVICE".padEnd(serviceWidth)}  ${"START".padStart(9)}  ${"TIMELINE".padEnd(barWidth + 2)}  ${"DURATION".padStart(9)}  STATUS`,
  ];
  for (const r of rows) {
    const sp = r.span;
    const from = offsetMs(sp.startTimeUnixNano);
    lines.push(
      [
        cut(label(r), nameWidth).padEnd(nameWidth),
        sp.service.padEnd(serviceWidth),
        `+${formatMs(from)}`.padStart(9),
        `|${bar(from, sp.durationMs)}|`,
        formatMs(sp.durationMs).padStart(9),
        statusText(sp.status.code, sp.status.message),
      ]
        .join("  ")
        .trimEnd(),
    );
    const indent = "  ".repeat(r.depth + 1);
    for (const e of sp.events) {
      const at = `+${formatMs(offsetMs(e.timeUnixNano))}`;
      if (e.name === "exception") {
        const type = attr(e.attributes["exception.type"]) || "exception";
        lines.push(`${indent}! ${at} ${type}: ${attr(e.attributes["exception.message"])}`);
      } else {
        const extras = Object.entries(e.attributes).map(([k, v]) => `${k}=${attr(v)}`);
        lines.push(`${indent}· ${at} ${e.name}${extras.length ? ` ${extras.join(" ")}` : ""}`);
      }
    }
  }
  return lines;
}

const quiet = new Set(["time", "level", "msg", "service", "trace_id", "span_id", "pid", "hostname"]);

/** `meshctl logs` output: one line per log line, time order, the rest of the fields after the message. */
export function renderLogLines(lines: readonly StoredLogLine[]): string[] {
  const width = Math.max(0, ...lines.map((l) => l.service.length));
  return lines.map((l) => {
    let extra = "";
    if (l.raw.startsWith("{")) {
      try {
        const fields = Object.entries(JSON.parse(l.raw) as Record<string, unknown>).filter(
          ([k]) => !quiet.has(k),
        );
        if (fields.length) extra = ` ${JSON.stringify(Object.fromEntries(fields))}`;
      } catch {
        // not JSON: the message is the whole line
      }
    }
    return `${new Date(l.timeMs).toISOString()} ${l.service.padEnd(width)} ${l.level.toUpperCase().padEnd(5)} ${l.msg}${extra}`;
  });
}
