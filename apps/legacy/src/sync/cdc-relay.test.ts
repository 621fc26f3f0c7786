import { randomBytes, randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { type UserChanged, UserChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { openValue, type SealingKey, sealedFieldAad } from "@meshwork/events";
import { describe, expect, it } from "vitest";
import { toUserChanged } from "./cdc-relay.js";

/**
 * What a users service from before issue 19 (main's `legacyPasswordHash`, verbatim) makes of a
 * capture: it reads the hash from field 8 (AAD the user id) or the clear field 5, and the email
 * and name from the clear fields 3 and 4 only. Fields 9-11 are unknown to it.
 */
function oldUsersPasswordHash(e: UserChanged, keys: readonly SealingKey[]): string {
  if (e.sealedPasswordHash) {
    if (keys.length === 0)
      throw new Error(
        `UserChanged sealed with key id "${e.sealedPasswordHash.keyId}", but LEGACY_SYNC_KEY is not set here: not applied`,
      );
    return openValue(keys, e.sealedPasswordHash, e.userId);
  }
  if (!e.passwordHash)
    throw new Error("UserChanged without a password hash (a redacted dead letter?): not applied");
  return e.passwordHash;
}

// Issue 19 (review finding): any NATS user that may update its own stream can source
// LEGACY_USERS on nats-server 2.9, so a user capture holds nothing about the person in the clear.
describe("toUserChanged", () => {
  const key = { id: "k1", key: randomBytes(32) };
  const user = {
    id: randomUUID(),
    email: "ada.lovelace@example.com",
    display_name: "Ada Lovelace",
    password_hash: "scrypt$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5",
    create_time: "2026-12-07T05:00:00Z",
  };
  const row = {
    seq: "42",
    event_id: randomUUID(),
    event_type: "legacy.user.changed",
    payload: user as never,
    created_at: new Date(),
  };

  it("seals the email, the display name and the hash, and writes none of them in the clear", () => {
    const envelope = toUserChanged(row, "ns.", key);
    const data = Buffer.from(envelope.data);
    for (const clear of [user.email, "ada.lovelace", user.display_name, "Lovelace", "scrypt$"])
      expect(data.includes(Buffer.from(clear)), clear).toBe(false);
    const e = fromBinary(UserChangedSchema, envelope.data);
    expect(e).toMatchObject({ userId: user.id, sequence: 42n, email: "", displayName: "", passwordHash: "" });
    expect(e.sealedEmail?.keyId).toBe("k1");
    expect(e.sealedDisplayName?.keyId).toBe("k1");
  });

  it("binds each to the user id and its field (the users service opens them so)", () => {
    const e = fromBinary(UserChangedSchema, toUserChanged(row, "ns.", key).data);
    const email = e.sealedEmail ?? expect.fail("no sealed email");
    const name = e.sealedDisplayName ?? expect.fail("no sealed display name");
    expect(openValue([key], email, sealedFieldAad(user.id, "sealed_email"))).toBe(user.email);
    expect(openValue([key], name, sealedFieldAad(user.id, "sealed_display_name"))).toBe(user.display_name);
    expect(() => openValue([key], email, sealedFieldAad(user.id, "sealed_display_name"))).toThrow();
    expect(() => openValue([key], email, user.id)).toThrow();
    const hash = e.sealedPasswordHashV2 ?? expect.fail("no sealed password hash");
    expect(openValue([key], hash, sealedFieldAad(user.id, "sealed_password_hash_v2"))).toBe(
      user.password_hash,
    );
    expect(() => openValue([key], hash, user.id)).toThrow();
  });

  // Review finding (h19seal2): an old users service must refuse a new capture (retried, then
  // dead-lettered, replayable after its upgrade), never apply it with the blank clear email and
  // name, whatever the order the two services are upgraded in.
  it("is refused by a users service from before the upgrade: it finds no hash there", () => {
    const e = fromBinary(UserChangedSchema, toUserChanged(row, "ns.", key).data);
    expect(e.sealedPasswordHash).toBeUndefined();
    expect(() => oldUsersPasswordHash(e, [key])).toThrow(
      "UserChanged without a password hash (a redacted dead letter?): not applied",
    );
  });
});
