import { describe, expect, it } from "vitest";
import type { Identity } from "./auth.js";
import { type KeySetKeys, VerifiedTokens } from "./verified-tokens.js";

const MAX_AGE = 300_000;
const T0 = 1_800_000_000_000;

function identity(expiresAt: number): Identity {
  return { subject: "s", roles: ["customer"], email: undefined, expiresAt };
}

function keySet(fetchedAt: number, keys: Record<string, string>): KeySetKeys {
  return { fetchedAt, keys: new Map(Object.entries(keys)) };
}

describe("the verified-token cache (issue 23)", () => {
  it("serves a token until its exp, never after", () => {
    const tokens = new VerifiedTokens(10, MAX_AGE);
    const set = keySet(T0, { k1: "A" });
    tokens.set("t", identity(T0 + 60_000), set, "k1", T0);
    expect(tokens.get("t", set, T0 + 59_999)?.subject).toBe("s");
    expect(tokens.get("t", set, T0 + 60_000)).toBeUndefined();
    // Dropped once past its end: not served again with an earlier clock either.
    expect(tokens.get("t", set, T0)).toBeUndefined();
  });

  it("serves a token no longer than the key set it was verified with is used", () => {
    const tokens = new VerifiedTokens(10, MAX_AGE);
    const set = keySet(T0, { k1: "A" });
    tokens.set("t", identity(T0 + 3_600_000), set, "k1", T0 + 1_000);
    expect(tokens.get("t", set, T0 + MAX_AGE - 1)).toBeDefined();
    expect(tokens.get("t", set, T0 + MAX_AGE)).toBeUndefined();
    // A token verified against a key set already past its age is not kept at all.
    tokens.set("u", identity(T0 + 3_600_000), set, "k1", T0 + MAX_AGE);
    expect(tokens.size).toBe(0);
  });

  it("drops a token at once when a newer key set no longer has its key (rotation), or has another key under its kid", () => {
    const tokens = new VerifiedTokens(10, MAX_AGE);
    const old = keySet(T0, { k1: "A" });
    tokens.set("t1", identity(T0 + 3_600_000), old, "k1", T0);
    tokens.set("t2", identity(T0 + 3_600_000), old, "k1", T0);
    // Fetched again, same keys: still served.
    expect(tokens.get("t1", keySet(T0 + 10, { k1: "A", k2: "B" }), T0 + 20)).toBeDefined();
    // The key is gone from the newest set: refused, though young and far from exp.
    expect(tokens.get("t1", keySet(T0 + 30, { k2: "B" }), T0 + 40)).toBeUndefined();
    // The kid is reused for other key material: refused as well.
    expect(tokens.get("t2", keySet(T0 + 30, { k1: "C" }), T0 + 40)).toBeUndefined();
  });

  it("keeps a token verified with a key without kid only while its key set is the current one", () => {
    const tokens = new VerifiedTokens(10, MAX_AGE);
    const set = keySet(T0, {});
    tokens.set("t", identity(T0 + 3_600_000), set, undefined, T0);
    expect(tokens.get("t", set, T0 + 1)).toBeDefined();
    expect(tokens.get("t", keySet(T0 + 2, {}), T0 + 3)).toBeUndefined();
  });

  it("holds at most its bound, the least recently used going first", () => {
    const tokens = new VerifiedTokens(3, MAX_AGE);
    const set = keySet(T0, { k1: "A" });
    for (const t of ["a", "b", "c"]) tokens.set(t, identity(T0 + 60_000), set, "k1", T0);
    expect(tokens.get("a", set, T0)).toBeDefined();
    tokens.set("d", identity(T0 + 60_000), set, "k1", T0);
    expect(tokens.size).toBe(3);
    expect(tokens.get("b", set, T0)).toBeUndefined();
    expect(tokens.get("a", set, T0)).toBeDefined();
    expect(tokens.get("d", set, T0)).toBeDefined();
  });
});
