import type { Counter } from "@opentelemetry/api";

/** Returned by {@link SharedHealth.call} when the call was not made or did not answer in time. */
export const UNAVAILABLE: unique symbol = Symbol("shared tier unavailable");

export interface SharedHealthOptions {
  cache: string;
  adapter: string;
  /** Deadline of one call to the shared tier, ms. */
  timeoutMs: number;
  /** While the tier is out, one call in this many ms probes it; the others skip it. */
  probeEveryMs: number;
  logger: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  outages: Counter;
}

/**
 * The shared tier's availability as one cache sees it: `up`, or `out` since some time. Every call
 * has a deadline; the first failure starts an outage (one log line, one `cache.shared.outages`
 * count), during which calls are skipped except one probe now and then, so a dead or slow tier
 * costs a request nothing but the probe's deadline; the first success ends it (one log line).
 */
export class SharedHealth {
  private state: { up: true } | { up: false; since: number; nextProbeAt: number } = { up: true };

  constructor(private readonly o: SharedHealthOptions) {}

  get up(): boolean {
    return this.state.up;
  }

  async call<R>(op: string, fn: () => Promise<R>): Promise<R | typeof UNAVAILABLE> {
    const now = Date.now();
    if (!this.state.up) {
      if (now < this.state.nextProbeAt) return UNAVAILABLE;
      this.state.nextProbeAt = now + this.o.probeEveryMs;
    }
    let timer: NodeJS.Timeout | undefined;
    const work = fn();
    try {
      const result = await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`${op} took longer than ${this.o.timeoutMs} ms`)),
            this.o.timeoutMs,
          );
        }),
      ]);
      this.setUp();
      return result;
    } catch (err) {
      work.catch(() => {}); // the late answer of a timed-out call is dropped
      this.setOut(op, err);
      return UNAVAILABLE;
    } finally {
      clearTimeout(timer);
    }
  }

  private setUp(): void {
    if (this.state.up) return;
    const outMs = Date.now() - this.state.since;
    this.state = { up: true };
    this.o.logger.info(
      { cache: this.o.cache, adapter: this.o.adapter, out_ms: outMs },
      "cache shared tier is back",
    );
  }

  private setOut(op: string, err: unknown): void {
    if (!this.state.up) return;
    const now = Date.now();
    this.state = { up: false, since: now, nextProbeAt: now + this.o.probeEveryMs };
    this.o.outages.add(1, { cache: this.o.cache, adapter: this.o.adapter });
    this.o.logger.warn(
      {
        cache: this.o.cache,
        adapter: this.o.adapter,
        op,
        err: err instanceof Error ? err.message : String(err),
      },
      "cache shared tier unavailable: reading through to the source until it answers again",
    );
  }
}
