/**
 * Deadlines and a stall watchdog for the chaos driver: the 10,000-order run of seed 20261208
 * stalled for 11 minutes with 16 clients awaiting promises that nothing settled, and the driver
 * waited with them. Every await of the driver now has a deadline of its own, and a run that stops
 * making progress fails with a dump of what each client was waiting for.
 */

/** A wait that outlived its deadline: the awaited promise had not settled. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/** The run made no progress for too long; the message carries the dump. */
export class StallError extends Error {
  override name = "StallError";
}

/**
 * Runs `run` with an AbortSignal and settles after `ms` at the latest, whatever `run` does: the
 * signal is aborted and the returned promise rejects with a {@link DeadlineError} naming `what`,
 * even when `run` ignores the signal and never settles (a late result or error is dropped).
 */
export function withDeadline<T>(
  what: string,
  ms: number,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new DeadlineError(`${what}: not settled after ${ms} ms`);
      controller.abort(err);
      reject(err);
    }, ms);
  });
  const work = Promise.resolve().then(() => run(controller.signal));
  work.catch(() => {}); // a rejection after the deadline is not unhandled
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

export interface Watchdog {
  /** Something was acknowledged: the stall clock restarts. */
  progress(): void;
  /** Rejects with a {@link StallError} (with the dump) once no progress was seen for `stallMs`. */
  readonly fired: Promise<never>;
  stop(): void;
}

/**
 * Watches a run's progress: when `progress()` was not called for `stallMs`, it takes `dump()`
 * (bounded by `dumpMs`; a dump that hangs is reported as such) and rejects `fired` with it.
 */
export function createWatchdog(o: {
  stallMs: number;
  what: string;
  dump: () => Promise<string>;
  dumpMs?: number;
}): Watchdog {
  let last = Date.now();
  let reject: (err: StallError) => void = () => {};
  const fired = new Promise<never>((_, r) => {
    reject = r;
  });
  fired.catch(() => {}); // observed through `fired` by whoever races it
  const tick = setInterval(
    () => {
      const idle = Date.now() - last;
      if (idle < o.stallMs) return;
      clearInterval(tick);
      void withDeadline("the stall dump", o.dumpMs ?? 20_000, () => o.dump())
        .catch((err: unknown) => `(no dump: ${String(err)})`)
        .then((dump) => reject(new StallError(`${o.what}: no progress for ${idle} ms\n${dump}`)));
    },
    Math.max(10, Math.min(1_000, Math.floor(o.stallMs / 4))),
  );
  return {
    progress: () => {
      last = Date.now();
    },
    fired,
    stop: () => clearInterval(tick),
  };
}
