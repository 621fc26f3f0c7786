import { readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { fromBinary, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserRegisteredSchema } from "@meshwork/contracts/meshwork/users/v1/events";
import { UserSchema, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { connectNats, streamName } from "@meshwork/events";
import { waitFor } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Backend,
  createStorage,
  identity,
  type RunningUsers,
  type Storage,
  startUsers,
} from "../test/harness.js";
import { loadConfig } from "./config.js";

const ADMIN_ID = "00000000-0000-7000-8000-0000000000ad";

/** The signed identity assertion the gateway sends upstream for an authenticated caller. */
function asCaller(subject: string, roles = "customer"): Interceptor {
  return (next) => (req) => {
    for (const [name, value] of Object.entries(identity.headers("users", subject, roles))) {
      req.header.set(name, value);
    }
    return next(req);
  };
}

describe.each(["pglite", "postgres"] as Backend[])("users service on %s", (backend) => {
  let storage: Storage;
  let users: RunningUsers;
  let client: ReturnType<typeof createClient<typeof UserService>>;
  let nc: NatsConnection;
  const clientAs = (subject?: string, roles?: string) =>
    createClient(
      UserService,
      createConnectTransport({
        baseUrl: users.url,
        httpVersion: "2",
        interceptors: subject ? [asCaller(subject, roles)] : [],
      }),
    );

  beforeAll(async () => {
    storage = await createStorage(backend);
    users = await startUsers(storage);
    client = clientAs(ADMIN_ID, "customer,admin");
    nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "users-test");
  });
  afterAll(async () => {
    await nc?.close();
    await users?.service.shutdown();
    await storage?.remove();
  });

  it("registers a user with a normalised email, and refuses the same email again", async () => {
    const password = "correct horse battery staple";
    const { user } = await client.registerUser({
      email: "Ada.Lovelace@Example.COM",
      password,
      displayName: " Ada ",
    });
    expect(user).toMatchObject({
      email: "ada.lovelace@example.com",
      displayName: "Ada",
      roles: ["customer"],
    });
    expect(user?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(user?.createTime).toBeDefined();
    const again = await client
      .registerUser({ email: "ada.lovelace@example.com", password, displayName: "Ada 2" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(again).toMatchObject({ code: Code.AlreadyExists });
    // The password and its hash are never in a response or a log line.
    expect(Object.keys(user ?? {})).not.toContain("passwordHash");
    expect(toJsonString(UserSchema, user!)).not.toContain("argon2");
    expect(users.logs.join("\n")).not.toContain(password);
    expect(users.logs.join("\n")).not.toContain("argon2");
  });

  it("publishes UserRegistered through its outbox, and nothing for a refused registration", async () => {
    const jsm = await jetstreamManager(nc);
    const stream = streamName(storage.namespace, "USERS");
    const { user } = await client.registerUser({
      email: "events@example.com",
      password: "publish me",
      displayName: "Ev",
    });
    await expect(
      client.registerUser({ email: "events@example.com", password: "publish me", displayName: "Ev" }),
    ).rejects.toMatchObject({ code: Code.AlreadyExists });
    const msg = await waitFor(() =>
      jsm.streams
        .getMessage(stream, { last_by_subj: `${storage.namespace}meshwork.users.v1.UserRegistered` })
        .then((m) => (m && fromBinary(UserRegisteredSchema, m.data).userId === user?.id ? m : undefined)),
    );
    expect(msg.header.get("ce-type")).toBe("meshwork.users.v1.UserRegistered");
    expect(msg.header.get("ce-source")).toBe("/meshwork/users");
    expect(fromBinary(UserRegisteredSchema, msg.data)).toMatchObject({
      email: "events@example.com",
      displayName: "Ev",
    });
    // One event per account: the refused registration rolled its event back with it.
    const accounts = (await client.listUsers({ pageSize: 100 })).users.length;
    await waitFor(async () => (await jsm.streams.info(stream)).state.messages === accounts, {
      what: `${accounts} events on the stream`,
    });
  });

  it("makes no email an admin by registering, not even the old default admin emails", async () => {
    for (const email of ["admin@meshwork.local", "Admin@Example.com"]) {
      const { user } = await client.registerUser({ email, password: "claim the admin", displayName: "A" });
      expect(user?.roles).toEqual(["customer"]);
      const res = await client.login({ email, password: "claim the admin" });
      expect(decodeJwt(res.accessToken).roles).toEqual(["customer"]);
    }
    expect(() => loadConfig({ USERS_ADMIN_EMAILS: "admin@meshwork.local" })).toThrow(
      /USERS_ADMIN_EMAILS was removed/,
    );
  });

  it("creates the first admin once, with the generated bootstrap secret from an owner-only file", async () => {
    const file = storage.bootstrapFile;
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(file)).mode & 0o777).toBe(0o700);
    const secret = readFileSync(file, "utf8").trim();
    expect(secret.length).toBeGreaterThanOrEqual(43); // 256 bits, base64url
    const anon = clientAs(undefined);
    const req = {
      bootstrapSecret: secret,
      email: "root@example.com",
      password: "the first admin!",
      displayName: "Root",
    };

    const wrong = await anon
      .createFirstAdmin({ ...req, bootstrapSecret: `${secret.slice(0, -4)}AAAA` })
      .catch((e: unknown) => ConnectError.from(e));
    expect(wrong).toMatchObject({ code: Code.PermissionDenied, rawMessage: "wrong bootstrap secret" });
    // A taken email rolls the whole transaction back: the secret stays unused.
    await client.registerUser({ email: "taken@example.com", password: "long enough", displayName: "T" });
    await expect(anon.createFirstAdmin({ ...req, email: "taken@example.com" })).rejects.toMatchObject({
      code: Code.AlreadyExists,
    });

    const { user } = await anon.createFirstAdmin(req);
    expect(user?.roles).toEqual(["customer", "admin"]);
    const token = (await anon.login({ email: "root@example.com", password: "the first admin!" })).accessToken;
    expect(decodeJwt(token).roles).toEqual(["customer", "admin"]);

    const again = await anon
      .createFirstAdmin({ ...req, email: "second@example.com" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(again).toMatchObject({ code: Code.FailedPrecondition });
    expect((again as ConnectError).rawMessage).toContain("already used");
    await expect(
      anon.login({ email: "second@example.com", password: "the first admin!" }),
    ).rejects.toMatchObject({
      code: Code.Unauthenticated,
    });
    // The secret is never logged.
    expect(users.logs.join("\n")).not.toContain(secret);
    expect(users.logs.some((l) => l.includes(file))).toBe(true);
  });

  it("shows a profile to its user and to admins only; lists users to admins only", async () => {
    const { user } = await client.registerUser({
      email: "own@example.com",
      password: "my profile",
      displayName: "O",
    });
    const id = user?.id ?? "";
    const other = "00000000-0000-7000-8000-00000000beef";
    expect((await clientAs(id).getUser({ id })).user?.email).toBe("own@example.com");
    expect((await clientAs(ADMIN_ID, "customer,admin").getUser({ id })).user?.email).toBe("own@example.com");
    for (const target of [id, "00000000-0000-7000-8000-000000000000"]) {
      await expect(clientAs(other).getUser({ id: target })).rejects.toMatchObject({
        code: Code.PermissionDenied,
      });
    }
    await expect(clientAs(undefined).getUser({ id })).rejects.toMatchObject({ code: Code.Unauthenticated });
    await expect(clientAs(id).listUsers({})).rejects.toMatchObject({ code: Code.PermissionDenied });
    await expect(clientAs(undefined).listUsers({})).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("rejects invalid registrations with INVALID_ARGUMENT naming the field", async () => {
    for (const [req, field] of [
      [{ email: "not-an-email", password: "long enough", displayName: "X" }, "email"],
      [{ email: "x@example.com", password: "short", displayName: "X" }, "password"],
      [{ email: "x@example.com", password: "long enough", displayName: "" }, "display_name"],
    ] as const) {
      const err = await client.registerUser(req).catch((e: unknown) => ConnectError.from(e));
      expect(err).toMatchObject({ code: Code.InvalidArgument });
      expect((err as ConnectError).rawMessage).toContain(field);
    }
  });

  it("logs in with a JWT that verifies against the published JWKS", async () => {
    await client.registerUser({ email: "grace@example.com", password: "hopper-1906", displayName: "Grace" });
    const res = await client.login({ email: "GRACE@example.com", password: "hopper-1906" });
    expect(res.tokenType).toBe("Bearer");
    const jwks = createRemoteJWKSet(new URL(`${users.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(res.accessToken, jwks, {
      issuer: "meshwork-users",
      audience: "meshwork",
    });
    expect(payload.sub).toBe(res.user?.id);
    expect(payload.roles).toEqual(["customer"]);
    expect(payload.exp).toBe(Number(res.expireTime?.seconds));
    expect(protectedHeader.alg).toBe("ES256");
    expect(protectedHeader.kid).toBeTruthy();
    const doc = (await (await fetch(`${users.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<Record<string, unknown>>;
    };
    expect(doc.keys.map((k) => k.kid)).toContain(protectedHeader.kid);
    for (const k of doc.keys) expect(k).not.toHaveProperty("d"); // no private part
  });

  it("answers a wrong password and an unknown email identically with UNAUTHENTICATED", async () => {
    await client.registerUser({ email: "linus@example.com", password: "penguins!", displayName: "L" });
    const wrong = await client
      .login({ email: "linus@example.com", password: "not-penguins" })
      .catch((e: unknown) => ConnectError.from(e));
    const unknown = await client
      .login({ email: "nobody@example.com", password: "penguins!" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(wrong).toMatchObject({ code: Code.Unauthenticated });
    expect(unknown).toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: (wrong as ConnectError).rawMessage,
    });
  });

  it("gets a user by id, NOT_FOUND for an unknown id, INVALID_ARGUMENT for a malformed one", async () => {
    const { user } = await client.registerUser({
      email: "get@example.com",
      password: "password1",
      displayName: "G",
    });
    expect((await client.getUser({ id: user?.id ?? "" })).user?.email).toBe("get@example.com");
    await expect(client.getUser({ id: "00000000-0000-7000-8000-000000000000" })).rejects.toMatchObject({
      code: Code.NotFound,
    });
    await expect(client.getUser({ id: "42" })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("pages through every user exactly once in a stable order", async () => {
    for (let i = 0; i < 5; i++) {
      await client.registerUser({
        email: `page${i}@example.com`,
        password: "password1",
        displayName: `P${i}`,
      });
    }
    const all = (await client.listUsers({ pageSize: 100 })).users.map((u) => u.id);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await client.listUsers({ pageSize: 3, pageToken: token });
      expect(page.users.length).toBeLessThanOrEqual(3);
      seen.push(...page.users.map((u) => u.id));
      token = page.nextPageToken;
      pages++;
    } while (token);
    expect(seen).toEqual(all);
    expect(pages).toBe(Math.ceil(all.length / 3));
    expect(new Set(seen).size).toBe(seen.length);
    // Above the maximum is coerced, not refused; negative and forged tokens are refused.
    expect((await client.listUsers({ pageSize: 5000 })).users.length).toBe(all.length);
    await expect(client.listUsers({ pageSize: -1 })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(client.listUsers({ pageToken: "garbage" })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
  });

  it("keeps its signing keys across a restart", async () => {
    const before = await client.login({ email: "grace@example.com", password: "hopper-1906" });
    const kid = decodeProtectedHeader(before.accessToken).kid;
    await users.service.shutdown();
    users = await startUsers(storage);
    client = clientAs(ADMIN_ID, "customer,admin");
    const jwks = createRemoteJWKSet(new URL(`${users.url}/.well-known/jwks.json`));
    await jwtVerify(before.accessToken, jwks, { issuer: "meshwork-users", audience: "meshwork" });
    const after = await client.login({ email: "grace@example.com", password: "hopper-1906" });
    expect(decodeProtectedHeader(after.accessToken).kid).toBe(kid);
  });
});
