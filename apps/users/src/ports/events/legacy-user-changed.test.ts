import { randomBytes, randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ProductChangedSchema,
  SealedValueSchema,
  type UserChanged,
  UserChangedSchema,
} from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type SealingKey, sealedFieldAad, sealValue } from "@meshwork/events";
import { describe, expect, it } from "vitest";
import { onLegacyUserChanged, openLegacyUser, redactLegacyUserDeadLetter } from "./legacy-user-changed.js";

const hash = "scrypt$16384$8$1$c2FsdA$aGFzaA";
const email = "ada.lovelace@example.com";
const name = "Ada Lovelace";
const current = { id: "k2", key: randomBytes(32) };
const previous = { id: "k1", key: randomBytes(32) };
const u1 = randomUUID();
const u2 = randomUUID();

/** A capture as legacy now publishes it: hash, email and display name sealed, nothing in the clear. */
const sealed = (userId: string, key: SealingKey = current) =>
  create(UserChangedSchema, {
    userId,
    sealedPasswordHashV2: create(
      SealedValueSchema,
      sealValue(key, hash, sealedFieldAad(userId, "sealed_password_hash_v2")),
    ),
    sealedEmail: create(SealedValueSchema, sealValue(key, email, sealedFieldAad(userId, "sealed_email"))),
    sealedDisplayName: create(
      SealedValueSchema,
      sealValue(key, name, sealedFieldAad(userId, "sealed_display_name")),
    ),
  });

/** A capture published between the two upgrades: only the hash sealed, in field 8, bound to the user id alone. */
function betweenUpgrades(userId: string): UserChanged {
  const e = sealed(userId);
  e.sealedPasswordHashV2 = undefined;
  e.sealedPasswordHash = create(SealedValueSchema, sealValue(current, hash, userId));
  e.sealedEmail = undefined;
  e.sealedDisplayName = undefined;
  e.email = email;
  e.displayName = name;
  return e;
}

/** The message `openLegacyUser` throws for `e` ("" when it opens). */
function refusal(e: UserChanged, keys: readonly SealingKey[]): string {
  try {
    openLegacyUser(e, keys);
    return "";
  } catch (err) {
    return (err as Error).message;
  }
}

// Review finding 1: a dead-lettered user capture must not keep legacy's password hash, nor
// (issue 19, h19seal) the person's email or name in the clear.
describe("redactLegacyUserDeadLetter", () => {
  it("blanks the clear password hash, email and display name of a UserChanged and keeps the rest", () => {
    const e = create(UserChangedSchema, {
      userId: u1,
      sequence: 7n,
      email,
      displayName: name,
      passwordHash: hash,
    });
    const out = redactLegacyUserDeadLetter(UserChangedSchema.typeName, toBinary(UserChangedSchema, e));
    for (const clear of [hash, email, name])
      expect(Buffer.from(out).includes(Buffer.from(clear)), clear).toBe(false);
    expect(fromBinary(UserChangedSchema, out)).toMatchObject({
      userId: u1,
      sequence: 7n,
      email: "",
      displayName: "",
      passwordHash: "",
    });
  });

  it("stores an undecodable UserChanged empty and leaves other types alone", () => {
    expect(
      redactLegacyUserDeadLetter(UserChangedSchema.typeName, new Uint8Array([0xff, 0xff, 0xff])),
    ).toEqual(new Uint8Array());
    const p = toBinary(ProductChangedSchema, create(ProductChangedSchema, { productId: "p-1" }));
    expect(redactLegacyUserDeadLetter(ProductChangedSchema.typeName, p)).toBe(p);
  });

  it("a replayed redacted letter is refused, never applied as an empty password or email", async () => {
    const handler = onLegacyUserChanged({} as never, []);
    const blankHash = create(UserChangedSchema, { userId: u1, email, passwordHash: "" });
    await expect(handler(blankHash, {} as never, { time: new Date() } as never)).rejects.toThrow(
      /without password hash/,
    );
    // Published between the two upgrades (hash sealed, email in the clear), then redacted.
    const partly = betweenUpgrades(u1);
    const letter = fromBinary(
      UserChangedSchema,
      redactLegacyUserDeadLetter(UserChangedSchema.typeName, toBinary(UserChangedSchema, partly)),
    );
    expect(refusal(letter, [current])).toMatch(/without email/);
  });

  it("a dead letter keeps the sealed fields: replayable once the key is here", () => {
    const out = fromBinary(
      UserChangedSchema,
      redactLegacyUserDeadLetter(UserChangedSchema.typeName, toBinary(UserChangedSchema, sealed(u1))),
    );
    expect(openLegacyUser(out, [current])).toEqual({ passwordHash: hash, email, displayName: name });
  });
});

describe("openLegacyUser (issue 19: the hash, the email and the name travel sealed)", () => {
  it("opens all three sealed under the current or the previous key", () => {
    const opened = { passwordHash: hash, email, displayName: name };
    expect(openLegacyUser(sealed(u1), [current, previous])).toEqual(opened);
    expect(openLegacyUser(sealed(u1, previous), [current, previous])).toEqual(opened);
  });

  it("refuses, naming the key id and never a value: unknown key, no key, the event moved to another user", () => {
    const moved = sealed(u1);
    moved.userId = u2;
    for (const [e, keys, re] of [
      [sealed(u1, { id: "k9", key: randomBytes(32) }), [current, previous], /key id "k9"/],
      [sealed(u1), [], /key id "k2", but LEGACY_SYNC_KEY is not set/],
      [moved, [current], /does not open with key id "k2"/],
    ] as const) {
      const message = refusal(e, keys);
      expect(message).toMatch(re);
      for (const clear of ["scrypt", email, "ada", name]) expect(message).not.toContain(clear);
    }
  });

  it("refuses a sealed email moved onto another user id or into the display name, naming field and key id", () => {
    const other = sealed(u2);
    const cases: [string, (e: UserChanged) => void, RegExp][] = [
      ["email onto another user", (e) => (e.sealedEmail = other.sealedEmail), /sealed_email: .*key id "k2"/],
      [
        "name onto another user",
        (e) => (e.sealedDisplayName = other.sealedDisplayName),
        /sealed_display_name: .*key id "k2"/,
      ],
      [
        "email as the display name",
        (e) => (e.sealedDisplayName = e.sealedEmail),
        /sealed_display_name: .*key id "k2"/,
      ],
      [
        "display name as the email",
        (e) => (e.sealedEmail = e.sealedDisplayName),
        /sealed_email: .*key id "k2"/,
      ],
      [
        "email as the password hash",
        (e) => (e.sealedPasswordHashV2 = e.sealedEmail),
        /sealed_password_hash_v2: /,
      ],
    ];
    for (const [what, move, re] of cases) {
      const e = sealed(u1);
      move(e);
      const message = refusal(e, [current]);
      expect(message, what).toMatch(re);
      expect(message, what).toMatch(/does not open/);
      for (const clear of ["scrypt", email, name]) expect(message, what).not.toContain(clear);
    }
  });

  it("refuses a user id that is not a UUID before opening anything (it is part of every AAD)", () => {
    for (const id of ["u-1", "", `${u1}\0sealed_email`]) {
      const e = sealed(u1);
      e.userId = id;
      expect(refusal(e, [current]), JSON.stringify(id)).toMatch(
        /^UserChanged user_id: ".*" is not a UUID: not applied$/,
      );
    }
  });

  it("refuses a sealed email or password hash that opens to a blank, as it refuses a blank clear one", () => {
    const blankEmail = sealed(u1);
    blankEmail.sealedEmail = create(
      SealedValueSchema,
      sealValue(current, "", sealedFieldAad(u1, "sealed_email")),
    );
    expect(refusal(blankEmail, [current])).toBe(
      "UserChanged sealed_email: opens to a blank email: not applied",
    );
    const blankHash = sealed(u1);
    blankHash.sealedPasswordHashV2 = create(
      SealedValueSchema,
      sealValue(current, "", sealedFieldAad(u1, "sealed_password_hash_v2")),
    );
    expect(refusal(blankHash, [current])).toMatch(/sealed_password_hash_v2: opens to a blank password hash/);
  });

  it("still reads the clear fields of an event published before the upgrade (all clear, or only the hash sealed)", () => {
    const old = create(UserChangedSchema, { userId: u1, email, displayName: name, passwordHash: hash });
    expect(openLegacyUser(old, [])).toEqual({ passwordHash: hash, email, displayName: name });
    expect(openLegacyUser(betweenUpgrades(u1), [current])).toEqual({
      passwordHash: hash,
      email,
      displayName: name,
    });
  });
});
