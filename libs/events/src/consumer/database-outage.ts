import { type DatabaseHandle, isConnectionError } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { BatchApplier } from "./apply-batch.js";
import type { Delivery } from "./delivery.js";
import type { ConsumerMetrics } from "./metrics.js";

/** What {@link DatabaseOutage} needs. */
export interface DatabaseOutageOptions {
  // biome-ignore lint/suspicious/noExplicitAny: consumers work with any service's schema
  database: DatabaseHandle<any>;
  logger: Logger;
  metrics: ConsumerMetrics;
  /**
   * Tells the broker that every message the consumer holds is still being worked on (`working()`),
   * so none is redelivered, and counted as a delivery, while the consumer waits.
   */
  keepAlive(): void;
  /** How often `keepAlive` runs while paused: well within the consumer's ack wait. */
  keepAliveMs: number;
}

/** `up`: the database answers; `down`: paused since `since`; `stopped`: the consumer is stopping. */
type OutageState = { kind: "up" } | { kind: "down"; since: number; probes: number } | { kind: "stopped" };

/** How a batch whose application hit a connection failure goes on. */
export type OutageVerdict =
  /** The database was away and answers again: apply the batch again, nothing counted. */
  | "recovered"
  /** The database answers at once: the failure may be the event's (or a blip already over). */
  | "reachable"
  /** The consumer is stopping: leave the batch unsettled (the broker redelivers it). */
  | "stopped";

/**
 * An outage of the consumer's own database. It is not the events' fault, so the consumer neither
 * naks nor dead-letters the batch that met it: it pauses, probes the database with backoff
 * (100 ms doubling to 5 s), keeps its messages alive on the broker, and applies the batch again
 * once the database answers. One warning when an outage begins and one line when it ends; the
 * `events.consumer.database_outages` counter and the `events.consumer.paused` gauge show it.
 */
export class DatabaseOutage {
  private s: OutageState = { kind: "up" };
  private wake: (() => void) | undefined;

  constructor(private readonly o: DatabaseOutageOptions) {}

  /** Whether the consumer is paused now. */
  get paused(): boolean {
    return this.s.kind === "down";
  }

  /**
   * Called after a batch failed with a connection failure (`isConnectionError` from `@meshwork/db`): returns
   * at once if the database answers, else pauses until it does (or the consumer stops).
   */
  async wait(error: unknown): Promise<OutageVerdict> {
    if (this.s.kind === "stopped") return "stopped";
    if (await this.reachable()) return "reachable";
    this.begin(error);
    const timer = setInterval(() => this.o.keepAlive(), this.o.keepAliveMs);
    this.o.keepAlive();
    try {
      for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
        await this.sleep(delay);
        if (this.s.kind !== "down") return "stopped";
        this.s.probes++;
        if (await this.reachable()) break;
      }
    } finally {
      clearInterval(timer);
    }
    this.end();
    return "recovered";
  }

  /** Ends a pause in progress; later calls to {@link DatabaseOutage.wait} return `stopped`. */
  stop(): void {
    if (this.s.kind === "down") this.o.metrics.paused.add(-1, this.o.metrics.attrs);
    this.s = { kind: "stopped" };
    this.wake?.();
  }

  private begin(error: unknown): void {
    this.s = { kind: "down", since: Date.now(), probes: 0 };
    this.o.metrics.databaseOutages.add(1, this.o.metrics.attrs);
    this.o.metrics.paused.add(1, this.o.metrics.attrs);
    this.o.logger.warn(
      { err: String(error) },
      "event consumer paused: its database is unreachable; retrying, no event is failed meanwhile",
    );
  }

  private end(): void {
    if (this.s.kind !== "down") return;
    const { since, probes } = this.s;
    this.s = { kind: "up" };
    this.o.metrics.paused.add(-1, this.o.metrics.attrs);
    this.o.logger.info(
      { down_ms: Date.now() - since, probes },
      "event consumer resumed: its database answers again",
    );
  }

  private async reachable(): Promise<boolean> {
    try {
      await this.o.database.ping();
      return true;
    } catch {
      return false;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

/**
 * Applies a batch with `apply`, riding out outages of the database: a batch that met a
 * connection failure is held and applied again once `outage` says the database answers. Resolves
 * `true` when the batch is to be settled, `false` when the consumer stopped meanwhile (the batch
 * is left unsettled, for the broker to redeliver).
 */
export async function applyThroughOutages(
  apply: BatchApplier,
  batch: Delivery[],
  outage: DatabaseOutage,
): Promise<boolean> {
  for (let blips = 0; ; ) {
    await apply(batch);
    const failure = batch.find((d) => isConnectionError(d.error));
    if (!failure) return true;
    const verdict = await outage.wait(failure.error);
    if (verdict === "stopped") return false;
    // The database answers at once: retry once (a blip already over), then let it count.
    if (verdict === "reachable" && ++blips > 1) return true;
    for (const d of batch) d.hold();
  }
}
