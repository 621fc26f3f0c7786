import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type UserChanged, UserChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type EventHandler, openValue, type SealingKey } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { applyLegacyUser } from "../../adapters/db/legacy-user-sync.js";

/**
 * The captured password hash: opened from `sealed_password_hash` with one of `keys` (bound to the
 * user id), or, from an event published before legacy sealed it, the clear `password_hash`. An
 * event that cannot be opened throws an error naming the key id (never the hash): it is retried,
 * then dead-lettered, and can be replayed once users holds the key.
 */
export function legacyPasswordHash(e: UserChanged, keys: readonly SealingKey[]): string {
  if (e.sealedPasswordHash) {
    if (keys.length === 0)
      throw new Error(
        `UserChanged sealed with key id "${e.sealedPasswordHash.keyId}", but LEGACY_SYNC_KEY is not set here: not applied`,
      );
    return openValue(keys, e.sealedPasswordHash, e.userId);
  }
  // Legacy's users always have a hash: a blank one is a redacted dead letter replayed.
  if (!e.passwordHash)
    throw new Error("UserChanged without a password hash (a redacted dead letter?): not applied");
  return e.passwordHash;
}

/**
 * UserChanged from the legacy monolith's CDC -> the account here (strangler fig: identity
 * follows the traffic). `keys` open the sealed password hash (LEGACY_SYNC_KEY: current and
 * previous). Logs the user id and the outcome only: never the email or the hash.
 */
export function onLegacyUserChanged(logger: Logger, keys: readonly SealingKey[]): EventHandler {
  return async (message, tx, event) => {
    const e = message as UserChanged;
    const passwordHash = legacyPasswordHash(e, keys);
    const outcome = await applyLegacyUser(tx, { ...e, passwordHash });
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
 * A dead-lettered UserChanged is stored without legacy's clear password hash (blanked; the sealed
 * one stays, useless without the key, so the letter can be replayed once the key is here); one that cannot
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
