import type { UserChanged } from "@meshwork/contracts/meshwork/legacy/v1/events";
import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { applyLegacyUser } from "../../adapters/db/legacy-user-sync.js";

/**
 * UserChanged from the legacy monolith's CDC -> the account here (strangler fig: identity
 * follows the traffic). Logs the user id and the outcome only: never the email or the hash.
 */
export function onLegacyUserChanged(logger: Logger): EventHandler {
  return async (message, tx, event) => {
    const e = message as UserChanged;
    const outcome = await applyLegacyUser(tx, e);
    const fields = {
      userId: e.userId,
      sequence: String(e.sequence),
      outcome,
      lagMs: Date.now() - event.time.getTime(),
    };
    if (outcome === "conflict")
      logger.warn(fields, "legacy user's email belongs to another account here; email not applied");
    else logger.debug(fields, "legacy user applied");
  };
}
