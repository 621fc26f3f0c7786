import { createServer, type Server } from "node:http";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Authenticator, createAuthenticator } from "./auth.js";
import { Code } from "./errors.js";

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

const sign = (key: KeyPair, kid: string) =>
  new SignJWT({ roles: ["customer"] })
    .setProtectedHeader({ alg: "ES256", kid })
    .setSubject("5b0e4c1e-2f7a-4d0b-8f6e-9b1f2a3c4d5e")
    .setIssuer("meshwork-users")
    .setAudience("meshwork")
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(key.privateKey);

const jwkOf = async (key: KeyPair, kid: string): Promise<JWK> => ({
  ...(await exportJWK(key.publicKey)),
  kid,
  alg: "ES256",
  use: "sig",
});

// Issue 23: verified tokens are kept, but never across a rotation that removes their key.
describe("the authenticator's verified tokens", () => {
  let published: JWK[] = [];
  let fetches = 0;
  let server: Server;
  let auth: Authenticator;
  const policy = { kind: "authenticated" } as const;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: published }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    auth = createAuthenticator({
      jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
      cooldownMs: 0,
      issuer: "meshwork-users",
      audience: "meshwork",
    });
  });
  afterAll(async () => {
    await auth.close();
    await new Promise((r) => server.close(r));
  });

  it("answers a token verified before at once, and stops when a rotation removes its key", async () => {
    const k1 = await generateKeyPair("ES256");
    const k2 = await generateKeyPair("ES256");
    published = [await jwkOf(k1, "k1")];
    const old = `Bearer ${await sign(k1, "k1")}`;
    expect(auth.authorizeNow(policy, old)).toBeUndefined(); // not verified yet
    expect((await auth.authorize(policy, old)).ok).toBe(true);
    // Verified: answered without a promise, and without another fetch.
    expect(auth.authorizeNow(policy, old)?.ok).toBe(true);
    expect(fetches).toBe(1);

    // The users service rotates: k1 is gone. A token under k2 has the key set fetched again.
    published = [await jwkOf(k2, "k2")];
    expect((await auth.authorize(policy, `Bearer ${await sign(k2, "k2")}`)).ok).toBe(true);
    expect(fetches).toBe(2);
    // The token under k1 is no longer answered from memory, and no longer verifies.
    expect(auth.authorizeNow(policy, old)).toBeUndefined();
    expect(await auth.authorize(policy, old)).toMatchObject({ ok: false, code: Code.Unauthenticated });
  });
});
