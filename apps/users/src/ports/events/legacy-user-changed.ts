import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type UserChanged, UserChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import {
  type EventHandler,
  openValue,
  type SealedValue,
  SealedValueError,
  type SealingKey,
  sealedFieldAad,
} from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { validate as isUuid } from "uuid";
import { applyLegacyUser } from "../../adapters/db/legacy-user-sync.js";

/** What a capture says about the person, opened: never logged, never copied anywhere else. */
export interface LegacyUserFields {
  email: string;
  displayName: string;
  passwordHash: string;
}

/** The event field a value comes from (named in errors, and in the AAD of a sealed one). */
type SealedField =
  | "sealed_password_hash"
  | "sealed_password_hash_v2"
  | "sealed_email"
  | "sealed_display_name";

/**
 * Opens one sealed field of `e` with one of `keys`: each bound to the user id and its field,
 * but for `sealed_password_hash` (events from before the upgrade), bound to the user id alone.
 * An error names the field and the key id, never the value.
 */
function openField(e: UserChanged, field: SealedField, sealed: SealedValue, keys: readonly SealingKey[]) {
  if (keys.length === 0)
    throw new Error(
      `UserChanged ${field}: sealed with key id "${sealed.keyId}", but LEGACY_SYNC_KEY is not set here: not applied`,
    );
  const aad = field === "sealed_password_hash" ? e.userId : sealedFieldAad(e.userId, field);
  try {
    return openValue(keys, sealed, aad);
  } catch (err) {
    if (err instanceof SealedValueError)
      throw new SealedValueError(`UserChanged ${field}: ${err.message}`, err.keyId, { cause: err });
    throw err;
  }
}

/**
 * A value legacy's users always have, from the first of `sources` the event holds: a sealed one
 * opened, or the clear one of an event published before legacy sealed it. A blank one (a
 * redacted dead letter replayed, or a sealed blank) is refused rather than applied as an empty
 * password or email.
 */
function requiredField(
  e: UserChanged,
  what: string,
  sources: readonly [SealedField, SealedValue | undefined][],
  clear: string,
  keys: readonly SealingKey[],
): string {
  const found = sources.find(([, sealed]) => sealed);
  const value = found?.[1] ? openField(e, found[0], found[1], keys) : clear;
  if (!value)
    throw new Error(
      found
        ? `UserChanged ${found[0]}: opens to a blank ${what}: not applied`
        : `UserChanged without ${what} (a redacted dead letter?): not applied`,
    );
  return value;
}

/**
 * The captured account: the password hash, the email and the display name opened from their
 * sealed fields with one of `keys`, or, field by field, the clear ones of an event published
 * before legacy sealed them. An event that cannot be opened throws an error naming the field and
 * the key id (never the value): it is retried, then dead-lettered, and can be replayed once users
 * holds the key. A user id that is not a UUID (legacy's ids all are) is refused before anything
 * is opened: it is part of every value's AAD.
 */
export function openLegacyUser(e: UserChanged, keys: readonly SealingKey[]): LegacyUserFields {
  if (!isUuid(e.userId))
    throw new Error(
      `UserChanged user_id: ${JSON.stringify(e.userId.slice(0, 64))} is not a UUID: not applied`,
    );
  const hashSources: [SealedField, SealedValue | undefined][] = [
    ["sealed_password_hash_v2", e.sealedPasswordHashV2],
    ["sealed_password_hash", e.sealedPasswordHash],
  ];
  return {
    passwordHash: requiredField(e, "password hash", hashSources, e.passwordHash, keys),
    email: requiredField(e, "email", [["sealed_email", e.sealedEmail]], e.email, keys),
    // A blank name is legacy's to allow (a back-office edit); a redacted letter fails on the email.
    displayName: e.sealedDisplayName
      ? openField(e, "sealed_display_name", e.sealedDisplayName, keys)
      : e.displayName,
  };
}

/**
 * UserChanged from the legacy monolith's CDC -> the account here (strangler fig: identity
 * follows the traffic). `keys` open the sealed password hash, email and display name
 * (LEGACY_SYNC_KEY: current and previous). Logs the user id and the outcome only: never the
 * email, the name or the hash.
 */
export function onLegacyUserChanged(logger: Logger, keys: readonly SealingKey[]): EventHandler {
  return async (message, tx, event) => {
    const e = message as UserChanged;
    const outcome = await applyLegacyUser(tx, { ...e, ...openLegacyUser(e, keys) });
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
 * A dead-lettered UserChanged is stored without anything about the person in the clear: the clear
 * password hash, email and display name of an event published before legacy sealed them are
 * blanked (such a letter is refused if replayed; `strangler backfill` re-sends the user), the
 * sealed ones stay, useless without the key, so a sealed letter can be replayed once the key is
 * here. One that cannot even be decoded is stored empty, since what it holds cannot be told
 * apart. Other types pass.
 */
export function redactLegacyUserDeadLetter(type: string, data: Uint8Array): Uint8Array {
  if (type !== UserChangedSchema.typeName) return data;
  try {
    const e = fromBinary(UserChangedSchema, data);
    e.passwordHash = "";
    e.email = "";
    e.displayName = "";
    return toBinary(UserChangedSchema, e);
  } catch {
    return new Uint8Array();
  }
}
