import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ProductChangedSchema, UserChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { describe, expect, it } from "vitest";
import { onLegacyUserChanged, redactLegacyUserDeadLetter } from "./legacy-user-changed.js";

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
    const handler = onLegacyUserChanged({} as never);
    const e = create(UserChangedSchema, { userId: "u-1", email: "a@example.com", passwordHash: "" });
    await expect(handler(e, {} as never, { time: new Date() } as never)).rejects.toThrow(
      /without a password hash/,
    );
  });
});
