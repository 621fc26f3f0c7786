import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { openValue, parseSealingKeys, SealedValueError, sealedFieldAad, sealValue } from "./sealed-field.js";

const hash = "scrypt$16384$8$1$c2FsdA$aGFzaA";
const key = (id: string) => ({ id, key: randomBytes(32) });

describe("sealValue / openValue", () => {
  const k1 = key("k1");

  it("opens what it sealed, and the sealed bytes do not hold the plaintext", () => {
    const sealed = sealValue(k1, hash, "user-1");
    expect(sealed.keyId).toBe("k1");
    expect(Buffer.from(sealed.ciphertext).includes(Buffer.from(hash))).toBe(false);
    expect(Buffer.from(sealed.ciphertext).includes(Buffer.from("scrypt"))).toBe(false);
    expect(openValue([key("k0"), k1], sealed, "user-1")).toBe(hash);
  });

  it("refuses an unknown key id, naming it", () => {
    const sealed = sealValue(key("k9"), hash, "user-1");
    expect(() => openValue([k1], sealed, "user-1")).toThrow(/key id "k9".*not among/);
  });

  it("refuses a wrong key under the same id", () => {
    const sealed = sealValue(k1, hash, "user-1");
    expect(() => openValue([key("k1")], sealed, "user-1")).toThrow(SealedValueError);
  });

  it("refuses another user id (the value cannot be moved to another user)", () => {
    const sealed = sealValue(k1, hash, "user-1");
    expect(() => openValue([k1], sealed, "user-2")).toThrow(/does not open with key id "k1"/);
  });

  it("sealedFieldAad binds a value to its field and its record: it opens in neither another field nor another record", () => {
    const email = sealValue(k1, "a@example.com", sealedFieldAad("user-1", "sealed_email"));
    expect(openValue([k1], email, sealedFieldAad("user-1", "sealed_email"))).toBe("a@example.com");
    for (const aad of [
      sealedFieldAad("user-1", "sealed_display_name"),
      sealedFieldAad("user-2", "sealed_email"),
      "user-1",
    ])
      expect(() => openValue([k1], email, aad), aad).toThrow(SealedValueError);
  });

  it("sealedFieldAad refuses a NUL in the record id or the field: two pairs never make one AAD", () => {
    expect(() => sealedFieldAad("a", "b\0c")).toThrow(/the field holds a NUL character/);
    expect(() => sealedFieldAad("a\0b", "c")).toThrow(/the record id holds a NUL character/);
    expect(sealedFieldAad("a", "b")).toBe("a\0b");
  });

  it("refuses tampered bytes, nonce or tag, and never puts the value in the message", () => {
    const sealed = sealValue(k1, hash, "user-1");
    for (const part of ["ciphertext", "nonce"] as const) {
      for (const at of [0, sealed[part].length - 1]) {
        const bytes = Uint8Array.from(sealed[part]);
        bytes[at] = (bytes[at] ?? 0) ^ 1;
        const bad = { ...sealed, [part]: bytes };
        let error: unknown;
        try {
          openValue([k1], bad, "user-1");
        } catch (err) {
          error = err;
        }
        expect(error, `${part}[${at}]`).toBeInstanceOf(SealedValueError);
        expect(String((error as Error).message)).not.toContain("scrypt");
      }
    }
    expect(() =>
      openValue([k1], { ...sealed, ciphertext: sealed.ciphertext.subarray(0, 10) }, "user-1"),
    ).toThrow(/malformed/);
  });
});

describe("parseSealingKeys", () => {
  it("reads id:key pairs in base64 or hex, first one first", () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const keys = parseSealingKeys(`new:${a.toString("base64")}, old:${b.toString("hex")}\n`, "V");
    expect(keys.map((k) => k.id)).toEqual(["new", "old"]);
    expect(keys[0]?.key.equals(a)).toBe(true);
    expect(keys[1]?.key.equals(b)).toBe(true);
  });

  it("names the variable, never the key, for a bad ring", () => {
    const short = randomBytes(16).toString("base64");
    expect(() => parseSealingKeys("", "LEGACY_SYNC_KEY")).toThrow(/^LEGACY_SYNC_KEY: no key/);
    expect(() => parseSealingKeys(short, "LEGACY_SYNC_KEY")).toThrow(/^LEGACY_SYNC_KEY: entry 1 needs an id/);
    expect(() => parseSealingKeys(`a:${short}`, "LEGACY_SYNC_KEY")).toThrow(
      /^LEGACY_SYNC_KEY: key "a" is not 32 bytes/,
    );
    const k = randomBytes(32).toString("base64");
    expect(() => parseSealingKeys(`a:${k},a:${k}`, "X")).toThrow(/^X: a key id appears twice/);
    try {
      parseSealingKeys(`a:${short}`, "X");
    } catch (err) {
      expect(String(err)).not.toContain(short);
    }
  });
});
