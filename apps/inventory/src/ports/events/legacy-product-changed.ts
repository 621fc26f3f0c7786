import type { ProductChanged } from "@meshwork/contracts/meshwork/legacy/v1/events";
import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { applyLegacyProduct } from "../../adapters/db/legacy-sync.js";

/** ProductChanged from the legacy monolith's CDC -> the product here (strangler fig, reads first). */
export function onLegacyProductChanged(namespace: string, logger: Logger): EventHandler {
  return async (message, tx, event) => {
    const e = message as ProductChanged;
    const outcome = await applyLegacyProduct(tx, e, namespace);
    logger.debug(
      {
        productId: e.productId,
        sequence: String(e.sequence),
        outcome,
        lagMs: Date.now() - event.time.getTime(),
      },
      "legacy change applied",
    );
  };
}
