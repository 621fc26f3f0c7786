import { Writable } from "node:stream";

/** What a logger under test wrote: each JSON line parsed, in order. */
export interface LogCapture {
  lines: Array<Record<string, unknown>>;
  /** Give this to the logger (pino's `destination`). */
  destination: Writable;
}

/** A log destination that keeps every JSON line written to it, parsed, for a test to read. */
export function captureLogs(): LogCapture {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, destination };
}
