import { describe, expect, it } from "vitest";
import type { UserRecord } from "../../domain/user.js";
import { type LoginDeps, login } from "./login.js";

// Review note 9: the re-hash of a legacy password at login is best-effort.
describe("login's re-hash of a legacy password", () => {
  const legacyHash = "scrypt$16384$8$1$c2FsdA$c2VjcmV0LWhhc2g";
  const record = {
    id: "0b6f3f2e-8f35-4a5e-9a53-6f0a7a1e2d11",
    email: "old.client@example.com",
    displayName: "Old",
    roles: ["customer"],
    passwordHash: legacyHash,
  } as unknown as UserRecord;

  function deps(replace: LoginDeps["users"]["replacePasswordHash"]) {
    const warnings: unknown[][] = [];
    const d = {
      users: { findByEmail: async () => record, replacePasswordHash: replace },
      hasher: {
        verify: async () => true,
        needsRehash: (h: string) => h.startsWith("scrypt$"),
        hash: async () => "$argon2id$v=19$new",
      },
      tokens: { issue: async () => ({ token: "t", expiresAt: new Date(0) }) },
      decoyHash: "decoy",
      attempts: { begin: async () => 0, succeeded: async () => {} },
      logger: { warn: (...args: unknown[]) => warnings.push(args) },
    } as unknown as LoginDeps;
    return { d, warnings };
  }

  it("a failing re-hash still logs the user in and warns without the hash or the query's text", async () => {
    const { d, warnings } = deps(async () => {
      throw Object.assign(new Error(`Failed query: update users\\nparams: ${legacyHash}`), { code: "57P01" });
    });
    const res = await login(d, { email: record.email, password: "my old password" });
    expect(res).toMatchObject({ token: "t", user: { id: record.id } });
    expect(res.user).not.toHaveProperty("passwordHash");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.[0]).toEqual({ user_id: record.id, error: "Error", code: "57P01" });
    expect(JSON.stringify(warnings)).not.toContain("scrypt$");
  });

  it("replaces the legacy hash when the write works, without a warning", async () => {
    const calls: string[][] = [];
    const { d, warnings } = deps(async (id, from, to) => {
      calls.push([id, from, to]);
      return true;
    });
    await login(d, { email: record.email, password: "my old password" });
    expect(calls).toEqual([[record.id, legacyHash, "$argon2id$v=19$new"]]);
    expect(warnings).toHaveLength(0);
  });
});
