import { randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { waitFor } from "@meshwork/testing";
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from "jose";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, identity, type RunningUsers, type Storage, startUsers } from "../test/harness.js";

// Issue 25.9: the signing keys are sealed at rest with a configured key, and rotate with an overlap.

const KEK = randomBytes(32).toString("base64");
const OTHER_KEK = randomBytes(32).toString("hex");

describe("the users service's signing keys on the real Postgres", () => {
  let storage: Storage;
  let sql: postgres.Sql;
  let users: RunningUsers | undefined;

  const rows = async () =>
    (await sql`select kid, private_jwk::text as private, retired_at from signing_keys order by created_at`) as Array<{
      kid: string;
      private: string;
      retired_at: Date | null;
    }>;
  const client = () =>
    createClient(UserService, createConnectTransport({ baseUrl: users?.url ?? "", httpVersion: "2" }));
  const jwks = async () =>
    (await (await fetch(`${users?.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet & {
      keys: Array<{ kid: string; d?: string }>;
    };
  const login = () => client().login({ email: "grace@example.com", password: "hopper-1906" });
  const restart = async (env: Record<string, string>) => {
    await users?.service.shutdown();
    users = undefined;
    users = await startUsers(storage, env);
  };

  beforeAll(async () => {
    storage = await createStorage("postgres");
    sql = postgres(storage.env.DATABASE_URL as string, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await users?.service.shutdown();
    await sql?.end();
    await storage?.remove();
  });

  it("stores the key in the clear without a key encryption key (development), and says so", async () => {
    users = await startUsers(storage);
    expect(users.logs.some((l) => l.includes("signing keys are stored unencrypted"))).toBe(true);
    await client().registerUser({
      email: "grace@example.com",
      password: "hopper-1906",
      displayName: "Grace",
    });
    const [row] = await rows();
    expect(JSON.parse(row?.private ?? "{}")).toHaveProperty("d");
  });

  it("seals a key stored in the clear once a key encryption key is given, and keeps signing with it", async () => {
    const before = await login();
    const kid = decodeProtectedHeader(before.accessToken).kid;
    await restart({ USERS_KEY_ENCRYPTION_KEY: KEK });
    expect(users?.logs.some((l) => l.includes("signing keys are stored unencrypted"))).toBe(false);
    const [row] = await rows();
    const stored = JSON.parse(row?.private ?? "{}") as Record<string, unknown>;
    expect(Object.keys(stored).sort()).toEqual(["data", "iv", "sealed", "tag"]);
    expect(stored.sealed).toBe("A256GCM");
    expect(row?.private).not.toMatch(/"d"|"x"|"y"/);
    const after = await login();
    expect(decodeProtectedHeader(after.accessToken).kid).toBe(kid);
    const keys = createLocalJWKSet(await jwks());
    await jwtVerify(before.accessToken, keys);
    await jwtVerify(after.accessToken, keys);
  });

  it("refuses to start without the key, or with another one, naming the setting", async () => {
    await users?.service.shutdown();
    users = undefined;
    await expect(startUsers(storage)).rejects.toThrow(
      /stored encrypted and no key encryption key is configured: set USERS_KEY_ENCRYPTION_KEY or USERS_KEY_ENCRYPTION_KEY_FILE/,
    );
    await expect(startUsers(storage, { USERS_KEY_ENCRYPTION_KEY: OTHER_KEK })).rejects.toThrow(
      /cannot be decrypted with the configured key encryption key/,
    );
    await expect(startUsers(storage, { USERS_KEY_ENCRYPTION_KEY: "too short" })).rejects.toThrow(
      /32 random bytes/,
    );
  });

  it("rotates with an overlap: the new key signs, the old one verifies until the overlap ends, then is dropped", async () => {
    await restart({ USERS_KEY_ENCRYPTION_KEY: KEK, USERS_KEY_OVERLAP_S: "2", USERS_KEY_REFRESH_MS: "200" });
    // A second instance on the same database follows the rotation made through the first.
    const second = await startUsers(storage, {
      USERS_KEY_ENCRYPTION_KEY: KEK,
      USERS_KEY_OVERLAP_S: "2",
      USERS_KEY_REFRESH_MS: "200",
    });
    try {
      const old = await login();
      const oldKid = decodeProtectedHeader(old.accessToken).kid as string;
      // RotateSigningKey is for admins: the service itself checks (as the gateway does).
      const rotation = await client().rotateSigningKey(
        {},
        { headers: identity.headers("users", "00000000-0000-7000-8000-0000000000ad", "admin") },
      );
      expect(rotation.kid).not.toBe(oldKid);
      expect(rotation.retiredKids).toEqual([oldKid]);
      const fresh = await login();
      expect(decodeProtectedHeader(fresh.accessToken).kid).toBe(rotation.kid);
      // Both published during the overlap; the new key sealed like the old.
      expect((await jwks()).keys.map((k) => k.kid).sort()).toEqual([oldKid, rotation.kid].sort());
      for (const r of await rows()) expect(JSON.parse(r.private)).toHaveProperty("sealed", "A256GCM");
      const other = createClient(
        UserService,
        createConnectTransport({ baseUrl: second.url, httpVersion: "2" }),
      );
      await waitFor(
        async () =>
          decodeProtectedHeader(
            (await other.login({ email: "grace@example.com", password: "hopper-1906" })).accessToken,
          ).kid === rotation.kid,
        { what: "the second instance to sign with the new key" },
      );
      // After the overlap: the old key is gone from the JWKS and from the database.
      await waitFor(async () => (await jwks()).keys.length === 1, {
        what: "the retired key to be dropped",
        timeoutMs: 10_000,
      });
      expect((await jwks()).keys.map((k) => k.kid)).toEqual([rotation.kid]);
      expect((await rows()).map((r) => r.kid)).toEqual([rotation.kid]);
      const keys = createLocalJWKSet(await jwks());
      await jwtVerify(fresh.accessToken, keys);
      await expect(jwtVerify(old.accessToken, keys)).rejects.toThrow(/no applicable key/);
    } finally {
      await second.service.shutdown();
    }
  });
});
