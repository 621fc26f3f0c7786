import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ProductChangedSchema,
  SealedValueSchema,
  UserChangedSchema,
} from "@meshwork/contracts/meshwork/legacy/v1/events";
import { sealValue } from "@meshwork/events";
import { describe, expect, it } from "vitest";
import {
  legacyPasswordHash,
  onLegacyUserChanged,
  redactLegacyUserDeadLetter,
} from "./legacy-user-changed.js";

// Review finding 1: a dead-lettered user capture must not keep legacy's password hash.
describe("redactLegacyUserDeadLetter", () => {
  const hash = "scrypt$16384$8$1$c2FsdA$aGFzaA";

  it("blanks the password hash of a UserChanged and keeps the rest", () => {
    const e = create(UserChangedSchema, { userId: "u-1", email: "a@example.com", passwordHash: hash });
    const out = redactLegacyUserDeadLetter(UserChangedSchema.typeName, toBinary(UserChangedSchema, e));
    expect(Buffer.from(out).includes(Buffer.from(hash))).toBe(false);
    expect(fromBinary(UserChangedSchema, out)).toMatchObject({
      userId: "u-1",
      email: "a@example.com",
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

  it("a replayed redacted letter (blank hash) is refused, never applied as an empty password", async () => {
    const handler = onLegacyUserChanged({} as never, []);
    const e = create(UserChangedSchema, { userId: "u-1", email: "a@example.com", passwordHash: "" });
    await expect(handler(e, {} as never, { time: new Date() } as never)).rejects.toThrow(
      /without a password hash/,
    );
  });
});

describe("legacyPasswordHash (issue 19: the hash travels sealed)", () => {
  const hash = "scrypt$16384$8$1$c2FsdA$aGFzaA";
  const current = { id: "k2", key: randomBytes(32) };
  const previous = { id: "k1", key: randomBytes(32) };
  const sealed = (userId: string, key = current) =>
    create(UserChangedSchema, {
      userId,
      sealedPasswordHash: create(SealedValueSchema, sealValue(key, hash, userId)),
    });

  it("opens a hash sealed under the current or the previous key", () => {
    expect(legacyPasswordHash(sealed("u-1"), [current, previous])).toBe(hash);
    expect(legacyPasswordHash(sealed("u-1", previous), [current, previous])).toBe(hash);
  });

  it("refuses, naming the key id and never the hash: unknown key, no key, a hash moved to another user", () => {
    const moved = sealed("u-1");
    moved.userId = "u-2";
    for (const [e, keys, re] of [
      [sealed("u-1", { id: "k9", key: randomBytes(32) }), [current, previous], /key id "k9"/],
      [sealed("u-1"), [], /key id "k2", but LEGACY_SYNC_KEY is not set/],
      [moved, [current], /does not open with key id "k2"/],
    ] as const) {
      let message = "";
      try {
        legacyPasswordHash(e, keys);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(re);
      expect(message).not.toContain("scrypt");
    }
  });

  it("still reads the clear field of an event published before the upgrade", () => {
    expect(legacyPasswordHash(create(UserChangedSchema, { userId: "u-1", passwordHash: hash }), [])).toBe(
      hash,
    );
  });

  it("a dead letter keeps the sealed hash (replayable once the key is here) and blanks a clear one", () => {
    const e = sealed("u-1");
    const out = fromBinary(
      UserChangedSchema,
      redactLegacyUserDeadLetter(UserChangedSchema.typeName, toBinary(UserChangedSchema, e)),
    );
    expect(legacyPasswordHash(out, [current])).toBe(hash);
  });
});
