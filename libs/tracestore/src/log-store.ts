import type { StoredLogLine } from "./model.js";

/** Limits of a {@link LogStore}. */
export interface LogStoreOptions {
  /** At most this many lines are kept (default 100 000). */
  maxLines?: number;
  /** At most about this many bytes of lines are kept (default 32 MiB). */
  maxBytes?: number;
}

/**
 * The recent log lines of every process of a mesh, in memory, bounded by lines and bytes
 * (oldest dropped first), indexed by trace id so that `meshctl logs --trace` and the console
 * find a request's lines without a scan.
 */
export class LogStore {
  readonly maxLines: number;
  readonly maxBytes: number;
  private lines: StoredLogLine[] = [];
  private head = 0;
  private bytes = 0;
  private readonly byTrace = new Map<string, StoredLogLine[]>();

  constructor(options: LogStoreOptions = {}) {
    this.maxLines = options.maxLines ?? 100_000;
    this.maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
  }

  /** Keeps one line, then drops the oldest lines until both limits hold. */
  add(line: StoredLogLine): void {
    this.lines.push(line);
    this.bytes += line.raw.length;
    if (line.traceId) {
      const list = this.byTrace.get(line.traceId);
      if (list) list.push(line);
      else this.byTrace.set(line.traceId, [line]);
    }
    while (this.lines.length - this.head > this.maxLines || this.bytes > this.maxBytes) this.dropOldest();
    // Compact the array once the dropped prefix is half of it (amortised O(1) per line).
    if (this.head > 1024 && this.head * 2 > this.lines.length) {
      this.lines = this.lines.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * Keeps one line a process wrote. A pino JSON line gives its time, level, message and
   * `trace_id`/`span_id`; any other line is kept as it is, timed now.
   */
  addRaw(service: string, raw: string, now: number = Date.now()): StoredLogLine {
    const line = parseLogLine(service, raw, now);
    this.add(line);
    return line;
  }

  /** Every kept line carrying `traceId`, in time order. */
  forTrace(traceId: string): StoredLogLine[] {
    return [...(this.byTrace.get(traceId.toLowerCase()) ?? [])].sort((a, b) => a.timeMs - b.timeMs);
  }

  /** How many lines and bytes are kept. */
  stats(): { lines: number; bytes: number } {
    return { lines: this.lines.length - this.head, bytes: this.bytes };
  }

  private dropOldest(): void {
    const line = this.lines[this.head];
    if (!line) return;
    this.lines[this.head] = undefined as unknown as StoredLogLine;
    this.head++;
    this.bytes -= line.raw.length;
    if (line.traceId) {
      const list = this.byTrace.get(line.traceId);
      if (list) {
        const i = list.indexOf(line);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) this.byTrace.delete(line.traceId);
      }
    }
  }
}

const pinoLevels: Record<number, string> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

/** Reads a pino JSON log line (any other text becomes a line with level `info`, timed `now`). */
export function parseLogLine(service: string, raw: string, now: number): StoredLogLine {
  if (raw.startsWith("{")) {
    try {
      const o = JSON.parse(raw) as Record<string, unknown>;
      const t = o.time;
      const timeMs = typeof t === "number" ? t : typeof t === "string" ? Date.parse(t) : Number.NaN;
      const level =
        typeof o.level === "number" ? (pinoLevels[o.level] ?? String(o.level)) : String(o.level ?? "info");
      const traceId = typeof o.trace_id === "string" ? o.trace_id.toLowerCase() : undefined;
      const spanId = typeof o.span_id === "string" ? o.span_id.toLowerCase() : undefined;
      return {
        timeMs: Number.isFinite(timeMs) ? timeMs : now,
        service: typeof o.service === "string" ? o.service : service,
        level,
        msg: typeof o.msg === "string" ? o.msg : "",
        ...(traceId ? { traceId } : {}),
        ...(spanId ? { spanId } : {}),
        raw,
      };
    } catch {
      // not JSON after all: kept as text below
    }
  }
  return { timeMs: now, service, level: "info", msg: raw, raw };
}
