import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { connectNats, streamName } from "@meshwork/events";
import { createGateway, type Gateway, loadConfig } from "@meshwork/gateway/embedded";
import { testIdentity } from "@meshwork/runtime/testing";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keysRotate } from "./keys.js";

// Issue 25.9: `meshctl keys rotate` against a real users process behind a real gateway that
// fetches the JWKS: old-key tokens work during the overlap, new-key tokens work, and after the
// overlap old-key tokens are refused.

const usersMain = fileURLToPath(new URL("../../../apps/users/dist/main.js", import.meta.url));
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const PASSWORD = "a long password";

/** The `kid` in a JWT's header. */
const kidOf = (jwt: string) =>
  (JSON.parse(Buffer.from(jwt.split(".")[0] ?? "", "base64url").toString()) as { kid?: string }).kid;

function sink() {
  let text = "";
  return {
    stream: {
      write(chunk: string) {
        text += chunk;
        return true;
      },
    } as unknown as NodeJS.WritableStream,
    text: () => text,
  };
}

const identity = testIdentity(["gateway"]);
const bootstrapSecret = randomBytes(32).toString("base64url");

describe("meshctl keys rotate (a users process and the gateway)", () => {
  let db: TestDatabase;
  let users: ManagedProcess;
  let gateway: Gateway;
  let url: string;
  let usersUrl: string;
  const namespace = `${uniqueName("t")}.`;

  beforeAll(async () => {
    db = await createTestDatabase("mw_keys");
    users = startProcess(process.execPath, [usersMain], {
      env: {
        PORT: "0",
        DATABASE_URL: db.url,
        NATS_URL: natsUrl,
        EVENTS_NAMESPACE: namespace,
        DISCOVERY: "static",
        // The first admin comes from the one-time bootstrap secret (no default admin).
        USERS_BOOTSTRAP_SECRET: bootstrapSecret,
        // Callers arrive as the gateway's signed assertion (the gateway below signs with its key).
        IDENTITY_TRUST: identity.trustText,
        USERS_KEY_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
        USERS_TOKEN_TTL_S: "600",
        USERS_KEY_OVERLAP_S: "3",
        USERS_KEY_REFRESH_MS: "200",
      },
    });
    const port = (await users.waitForLog((l) => l.msg === "listening")).port as number;
    await users.waitForLog((l) => l.msg === "health changed" && l.status === "SERVING");
    usersUrl = `http://127.0.0.1:${port}`;
    gateway = createGateway({
      config: loadConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        UPSTREAMS: `users=${usersUrl}`,
        JWKS_URL: `${usersUrl}/.well-known/jwks.json`,
        JWKS_COOLDOWN_MS: "100",
        JWKS_MAX_AGE_MS: "500",
        IDENTITY_KEY: identity.keys.gateway?.privateKey,
      }),
    });
    ({ url } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await users?.stop();
    const nc = await connectNats(natsUrl, "cleanup");
    await (await jetstreamManager(nc)).streams.delete(streamName(namespace, "USERS")).catch(() => {});
    await nc.close();
    await db?.drop();
  });

  const client = () => createClient(UserService, createGrpcTransport({ baseUrl: url }));
  const login = async (email: string) => {
    await client()
      .registerUser({ email, password: PASSWORD, displayName: email })
      .catch(() => {});
    const res = await client().login({ email, password: PASSWORD });
    return { token: res.accessToken, id: res.user?.id ?? "" };
  };
  /** Alice reads her own profile through the gateway with `token`: OK or the code's name. */
  const use = (token: string, id: string) =>
    client()
      .getUser({ id }, { headers: { authorization: `Bearer ${token}` } })
      .then(
        () => "OK",
        (e: unknown) => Code[ConnectError.from(e).code] as string,
      );

  it("needs an admin's token", async () => {
    const err = sink();
    expect(await keysRotate({ gateway: url, token: undefined, out: sink().stream, err: err.stream })).toBe(2);
    expect(err.text()).toContain("MESHWORK_TOKEN");
    const alice = await login("alice@example.com");
    const refused = sink();
    expect(
      await keysRotate({ gateway: url, token: alice.token, out: sink().stream, err: refused.stream }),
    ).toBe(1);
    expect(refused.text()).toContain("role admin required");
  });

  it("rotates with an overlap: old-key tokens work until it ends, new-key tokens work, then old ones are refused", async () => {
    await client().createFirstAdmin({
      bootstrapSecret,
      email: "admin@example.com",
      password: PASSWORD,
      displayName: "Admin",
    });
    const admin = await login("admin@example.com");
    const alice = await login("alice@example.com");
    const oldKid = kidOf(alice.token);
    expect(await use(alice.token, alice.id)).toBe("OK");

    const out = sink();
    expect(await keysRotate({ gateway: url, token: admin.token, out: out.stream, err: sink().stream })).toBe(
      0,
    );
    const newKid = /signing key rotated: (\S+) signs/.exec(out.text())?.[1];
    expect(newKid).toBeDefined();
    expect(newKid).not.toBe(oldKid);
    expect(out.text()).toContain(`retired ${oldKid}`);

    const fresh = await login("alice@example.com");
    expect(kidOf(fresh.token)).toBe(newKid);
    // A kid the gateway has not seen makes it fetch the key set again.
    await waitFor(async () => (await use(fresh.token, alice.id)) === "OK", {
      what: "the new key at the gateway",
    });
    // During the overlap the old key still verifies.
    expect(await use(alice.token, alice.id)).toBe("OK");

    // After it (3 s, then the gateway's key set ages out within 0.5 s): refused, the new one not.
    await waitFor(async () => (await use(alice.token, alice.id)) === "Unauthenticated", {
      what: "the old key's tokens to be refused",
      timeoutMs: 15_000,
    });
    expect(await use(fresh.token, alice.id)).toBe("OK");
  });
});
