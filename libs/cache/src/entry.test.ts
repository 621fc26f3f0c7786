import { describe, expect, it } from "vitest";
import { decodeEntry, type Entry, encodeEntry, supersedes } from "./entry.js";

const entry = (kind: Entry["kind"], version: number, expiresAt = Date.now() + 60_000): Entry => ({
  kind,
  version,
  expiresAt,
  payload: kind === "value" ? new Uint8Array([1, 2, 3]) : new Uint8Array(),
});

describe("cache entries", () => {
  it("round-trip through their binary form, versions up to 2^53 - 1 exact", () => {
    const e = { ...entry("value", Number.MAX_SAFE_INTEGER), expiresAt: 1_900_000_000_123 };
    const back = decodeEntry(encodeEntry(e));
    expect(back).toEqual(e);
    expect(decodeEntry(encodeEntry(entry("tombstone", 7)))?.kind).toBe("tombstone");
  });

  it("are refused when the bytes are not an entry", () => {
    expect(decodeEntry(new Uint8Array([9, 0, 0]))).toBeUndefined();
    expect(decodeEntry(new TextEncoder().encode("a string someone else stored"))).toBeUndefined();
    expect(() => encodeEntry(entry("value", -1))).toThrow(/version -1/);
  });

  it("replace older ones only: a tombstone never replaces the value at its own version", () => {
    expect(supersedes(entry("value", 2), entry("value", 1))).toBe(true);
    expect(supersedes(entry("value", 1), entry("value", 2))).toBe(false);
    expect(supersedes(entry("value", 1), entry("tombstone", 2))).toBe(false);
    expect(supersedes(entry("value", 2), entry("tombstone", 2))).toBe(true);
    expect(supersedes(entry("tombstone", 2), entry("value", 2))).toBe(false);
    expect(supersedes(entry("tombstone", 3), entry("value", 2))).toBe(true);
    expect(supersedes(entry("missing", 0), entry("tombstone", 1))).toBe(false);
    // An expired entry is replaced by anything.
    expect(supersedes(entry("value", 1), entry("value", 5, Date.now() - 1))).toBe(true);
  });
});
