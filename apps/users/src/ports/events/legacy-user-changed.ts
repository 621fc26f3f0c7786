import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type UserChanged, UserChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
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
    // Legacy's users always have a hash: a blank one is a redacted dead letter replayed.
    if (!e.passwordHash)
      throw new Error("UserChanged without a password hash (a redacted dead letter?): not applied");
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

/**
 * A dead-lettered UserChanged is stored without legacy's password hash (blanked); one that cannot
 * even be decoded is stored empty, since what it holds cannot be told apart. Other types pass.
 */
export function redactLegacyUserDeadLetter(type: string, data: Uint8Array): Uint8Array {
  if (type !== UserChangedSchema.typeName) return data;
  try {
    const e = fromBinary(UserChangedSchema, data);
    e.passwordHash = "";
    return toBinary(UserChangedSchema, e);
  } catch {
    return new Uint8Array();
  }
}
