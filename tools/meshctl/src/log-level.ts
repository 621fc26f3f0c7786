/** The levels every Meshwork process accepts as `LOG_LEVEL` (pino's), lowest first. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** pino's numbers for its level names (`"level":40` in a line of a process that logs numbers). */
const RANK: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

export function parseLogLevel(value: string): LogLevel {
  if ((LOG_LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new Error(`--log-level: "${value}" is not one of ${LOG_LEVELS.join(", ")}`);
}

/**
 * The `LOG_LEVEL` `up` gives its processes for a mesh shown at `level`: never above `info`, since
 * `up` learns each process's address from its info-level `listening` line (with `--ports auto`
 * it has no other way to know it). Lines below `level` are then dropped by {@link shownAt}.
 */
export function childLogLevel(level: LogLevel): LogLevel {
  return RANK[level] > RANK.info ? "info" : level;
}

/** The level of a JSON log line (`"level":"warn"` or pino's `"level":40`); undefined for anything else. */
export function lineLevel(line: string): number | undefined {
  const m = /^\{.*?"level":(?:"([a-z]+)"|(\d+))/.exec(line);
  if (!m) return undefined;
  if (m[2] !== undefined) return Number(m[2]);
  return RANK[m[1] as LogLevel];
}

/** Whether `up` shows (and keeps) a process's output line at `level`; lines that are not JSON logs always. */
export function shownAt(line: string, level: LogLevel): boolean {
  const rank = lineLevel(line);
  return rank === undefined || rank >= RANK[level];
}
