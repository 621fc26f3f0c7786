import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { createRemoteJWKSet, jwtVerify, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, type RunningUsers, type Storage, startUsers } from "../test/harness.js";

// The strangler fig's identity step: an old client's legacy session (the monolith's HS256 JWT)
// becomes a mesh token for the same user id.
const SECRET = "legacy-session-secret-".padEnd(48, "x");

async function legacyToken(
  sub: string,
  options: { secret?: string; issuer?: string; expiresInS?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ roles: ["customer", "admin"] })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuer(options.issuer ?? "legacy")
    .setIssuedAt(now - 10)
    .setExpirationTime(now + (options.expiresInS ?? 3600))
    .sign(new TextEncoder().encode(options.secret ?? SECRET));
}

describe("ExchangeLegacyToken", () => {
  let storage: Storage;
  let users: RunningUsers;
  let client: ReturnType<typeof createClient<typeof UserService>>;
  const code = (p: Promise<unknown>) =>
    p.then(
      () => "OK",
      (e: unknown) => Code[ConnectError.from(e).code],
    );

  beforeAll(async () => {
    storage = await createStorage("postgres");
    users = await startUsers(storage, { LEGACY_TOKEN_SECRET: SECRET });
    client = createClient(UserService, createConnectTransport({ baseUrl: users.url, httpVersion: "2" }));
  });
  afterAll(async () => {
    await users?.service.shutdown();
    await storage?.remove();
  });

  it("trades a valid legacy session for a mesh token of the same user, with this service's roles", async () => {
    const { user } = await client.registerUser({
      email: "old.client@example.com",
      password: "long enough password",
      displayName: "Old Client",
    });
    const res = await client.exchangeLegacyToken({ legacyToken: await legacyToken(user!.id) });
    expect(res.tokenType).toBe("Bearer");
    expect(res.user).toMatchObject({ id: user!.id, email: "old.client@example.com" });
    const jwks = createRemoteJWKSet(new URL(`${users.url}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(res.accessToken, jwks, {
      issuer: "meshwork-users",
      audience: "meshwork",
    });
    expect(payload.sub).toBe(user!.id);
    // The legacy token claimed admin: the mesh token carries the roles the users service holds.
    expect(payload.roles).toEqual(["customer"]);
  });

  it("refuses a token that does not verify, has expired or is not legacy's, and a user not synced yet", async () => {
    const { user } = await client.registerUser({
      email: "second.client@example.com",
      password: "long enough password",
      displayName: "Second",
    });
    const id = user!.id;
    const exchange = async (legacy: string) => code(client.exchangeLegacyToken({ legacyToken: legacy }));
    expect(await exchange(await legacyToken(id, { secret: "another-secret-".padEnd(48, "y") }))).toBe(
      "Unauthenticated",
    );
    expect(await exchange(await legacyToken(id, { expiresInS: -60 }))).toBe("Unauthenticated");
    expect(await exchange(await legacyToken(id, { issuer: "meshwork-users" }))).toBe("Unauthenticated");
    const unsigned = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(
      JSON.stringify({ sub: id, iss: "legacy", exp: Math.floor(Date.now() / 1000) + 600 }),
    ).toString("base64url")}.`;
    expect(await exchange(unsigned)).toBe("Unauthenticated");
    expect(await exchange("not a jwt")).toBe("Unauthenticated");
    expect(await exchange("")).toBe("InvalidArgument");
    const err = await client
      .exchangeLegacyToken({ legacyToken: await legacyToken(randomUUID()) })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.FailedPrecondition });
    expect((err as ConnectError).rawMessage).toMatch(/not synced from legacy/);
  });

  // Review finding 3: the signature is checked before the account is charged.
  it("never counts a forged token against the user it names; a verified session still meets Login's lock", async () => {
    const { user } = await client.registerUser({
      email: "third.client@example.com",
      password: "long enough password",
      displayName: "Third",
    });
    const id = user!.id;
    const forged = await legacyToken(id, { secret: "not-the-secret-".padEnd(48, "z") });
    // Default USERS_AUTH_MAX_FAILURES is 5: well past it.
    for (let i = 0; i < 8; i++)
      expect(await code(client.exchangeLegacyToken({ legacyToken: forged }))).toBe("Unauthenticated");
    expect(await code(client.exchangeLegacyToken({ legacyToken: await legacyToken(id) }))).toBe("OK");
    expect(
      await code(client.login({ email: "third.client@example.com", password: "long enough password" })),
    ).toBe("OK");
    for (let i = 0; i < 5; i++)
      expect(
        await code(client.login({ email: "third.client@example.com", password: "wrong password 1" })),
      ).toBe("Unauthenticated");
    expect(await code(client.exchangeLegacyToken({ legacyToken: await legacyToken(id) }))).toBe(
      "ResourceExhausted",
    );
  });
});
