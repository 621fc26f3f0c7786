import type { OrderChanged } from "@meshwork/contracts/meshwork/legacy/v1/events";
import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { applyLegacyOrder } from "../../adapters/db/legacy-order-sync.js";

/**
 * OrderChanged from the legacy monolith's CDC -> the order here, as it is in legacy (strangler
 * fig: orders follow the traffic). No saga starts and nothing is published.
 */
export function onLegacyOrderChanged(logger: Logger): EventHandler {
  return async (message, tx, event) => {
    const e = message as OrderChanged;
    const outcome = await applyLegacyOrder(tx, e);
    const fields = {
      orderId: e.orderId,
      sequence: String(e.sequence),
      snapshot: e.snapshot,
      outcome,
      lagMs: Date.now() - event.time.getTime(),
    };
    if (outcome === "mesh-owned")
      logger.warn(fields, "legacy captured an order the mesh placed; left alone (the mesh's copy wins)");
    else logger.debug(fields, "legacy order applied");
  };
}
