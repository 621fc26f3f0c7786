import type { Logger } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import type { PaymentStore } from "./payment-store.js";

export interface HoldSweeper {
  /** Stops the loop and waits for a pass in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `store.releaseLeftHolds` every `everyMs` until stopped: a hold the provider kept after a
 * void of a tombstone (provider down, or the instance killed before asking) is released within
 * about two periods of the provider answering again. A failed pass is logged and retried at the
 * next period; passes never overlap.
 */
export function startHoldSweeper(
  store: Pick<PaymentStore, "releaseLeftHolds">,
  everyMs: number,
  logger: Logger,
  meter: Meter,
): HoldSweeper {
  const confirmed = meter.createCounter("payments.sweeper.voids_confirmed", {
    description:
      "Tombstones whose void the provider confirmed through the sweeper (the void had failed or never reached it)",
  });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let pass: Promise<void> = Promise.resolve();
  const run = async () => {
    try {
      const r = await store.releaseLeftHolds(everyMs);
      if (r.released > 0) {
        confirmed.add(r.released);
        logger.info({ released: r.released }, "voided at the provider the holds tombstones left");
      }
      if (r.error !== undefined) {
        logger.warn(
          { pending: r.pending, err: String(r.error) },
          "the provider failed a sweeper's void; the next pass retries",
        );
      }
    } catch (err) {
      logger.warn({ err: String(err) }, "hold sweep failed; retrying at the next period");
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      pass = run().finally(schedule);
    }, everyMs);
    timer.unref();
  };
  schedule();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await pass;
    },
  };
}
