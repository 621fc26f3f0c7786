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
  const released = meter.createCounter("payments.holds_released", {
    description: "Holds released at the provider by the sweeper (tombstones whose void had not reached it)",
  });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let pass: Promise<void> = Promise.resolve();
  const run = async () => {
    try {
      const r = await store.releaseLeftHolds(everyMs);
      if (r.released > 0) {
        released.add(r.released);
        logger.info({ released: r.released, failed: r.failed }, "released holds left at the provider");
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
