import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { connectNats, streamName } from "@meshwork/events";
import { deleteNamespaceStreams } from "@meshwork/events/testing";
import { createGateway, type Gateway, loadConfig } from "@meshwork/gateway/embedded";
import { testIdentity } from "@meshwork/runtime/testing";
import {
  createTestDatabase,
  grpcJsClient,
  grpcJsUnary,
  loadGrpcJsPackage,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { createRemoteJWKSet, decodeJwt, jwtVerify, SignJWT } from "jose";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Issue 19, identity follows the traffic, on real processes: the legacy monolith (its CDC relay),
// the users service (its LEGACY consumer, Login, ExchangeLegacyToken) and the gateway's strangler
// routes, each service on its own database, over the shared NATS.
const legacyMain = fileURLToPath(new URL("../../../apps/legacy/dist/main.js", import.meta.url));
const usersMain = fileURLToPath(new URL("../../../apps/users/dist/main.js", import.meta.url));
const gatewayMain = fileURLToPath(new URL("../../../apps/gateway/dist/main.js", import.meta.url));
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
/** The bound a legacy user change must reach the users service within (figures are printed). */
const SYNC_BOUND_MS = 5_000;
const SECRET = randomBytes(24).toString("base64url").padEnd(40, "x");
/** Seals the password hashes on LEGACY_USERS: legacy seals with the first, users opens with either. */
const SYNC_KEY = `k2:${randomBytes(32).toString("base64")},k1:${randomBytes(32).toString("base64")}`;
const MAX_FAILURES = 3;
const identity = testIdentity(["gateway"]);
const namespace = `${uniqueName("su")}.`;

let legacyDb: TestDatabase;
let usersDb: TestDatabase;
let legacy: ManagedProcess | undefined;
let users: ManagedProcess | undefined;
let gateway: Gateway | undefined;
let legacyUrl: string;
let usersUrl: string;
let url: string;
let adminUrl: string;
let lsql: postgres.Sql;
let usql: postgres.Sql;

const usersClient = () => createClient(UserService, createGrpcTransport({ baseUrl: usersUrl }));
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (e: unknown) => Code[ConnectError.from(e).code],
  );

async function legacyPost(path: string, body: unknown) {
  const res = await fetch(`${legacyUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers read in assertions
  return { status: res.status, body: (await res.json()) as any };
}

/** Registers a user through legacy's own API and logs in there: a real legacy session. */
async function legacyUser(tag: string, password = "old legacy password") {
  const email = `${tag}.${randomBytes(4).toString("hex")}@example.com`;
  const created = await legacyPost("/api/users", { email, password, display_name: `Legacy ${tag}` });
  expect(created.status).toBe(200);
  const started = performance.now();
  const login = await legacyPost("/api/login", { email, password });
  expect(login.status).toBe(200);
  return {
    id: created.body.id as string,
    email,
    password,
    token: login.body.access_token as string,
    started,
  };
}

const meshRow = async (id: string) =>
  (
    await usql<{ email: string; display_name: string; password_hash: string; roles: string[] }[]>`
      select email, display_name, password_hash, roles from users where id = ${id}`
  )[0];

/** Waits until the users service holds `id` in a state `ok` accepts; the ms it took since `from`. */
async function synced(
  id: string,
  from: number,
  ok: (r: NonNullable<Awaited<ReturnType<typeof meshRow>>>) => boolean,
) {
  await waitFor(
    async () => {
      const r = await meshRow(id);
      return !!r && ok(r);
    },
    { what: `legacy user ${id} in the users service`, timeoutMs: 30_000, intervalMs: 20 },
  );
  return Math.round(performance.now() - from);
}

async function setRoute(route: string, weight: number) {
  const res = await fetch(`${adminUrl}/strangler/routes/${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ weight }),
  });
  expect(res.status).toBe(200);
}

async function getViaGateway(path: string, authorization: string) {
  const res = await fetch(`${url}${path}`, { headers: { authorization } });
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers read in assertions
  return { status: res.status, side: res.headers.get("x-meshwork-side"), body: (await res.json()) as any };
}

/**
 * A legacy user the mesh cannot hold: a mesh account took the email first, so the sync records a
 * conflict and the session exchange answers FAILED_PRECONDITION. With a real legacy session.
 */
async function conflictingUser() {
  const email = `taken.${randomBytes(4).toString("hex")}@example.com`;
  const mesh = await usersClient().registerUser({
    email,
    password: "mesh password 1",
    displayName: "Mesh",
  });
  const created = await legacyPost("/api/users", {
    email,
    password: "legacy password",
    display_name: "Old",
  });
  expect(created.status).toBe(200);
  const id = created.body.id as string;
  await waitFor(async () => (await usql`select 1 from legacy_user_sync where user_id = ${id}`).length === 1, {
    what: "the conflicting capture applied",
    timeoutMs: 30_000,
  });
  const login = await legacyPost("/api/login", { email, password: "legacy password" });
  expect(login.status).toBe(200);
  return { id, email, meshId: mesh.user?.id ?? "", token: login.body.access_token as string };
}

beforeAll(async () => {
  [legacyDb, usersDb] = await Promise.all([createTestDatabase("mw_su_l"), createTestDatabase("mw_su_u")]);
  lsql = postgres(legacyDb.url, { max: 2, onnotice: () => {} });
  usql = postgres(usersDb.url, { max: 2, onnotice: () => {} });
  const common = {
    NATS_URL: natsUrl,
    EVENTS_NAMESPACE: namespace,
    PORT: "0",
    LEGACY_TOKEN_SECRET: SECRET,
    LEGACY_SYNC_KEY: SYNC_KEY,
  };
  legacy = startProcess(process.execPath, [legacyMain], { env: { ...common, DATABASE_URL: legacyDb.url } });
  users = startProcess(process.execPath, [usersMain], {
    env: {
      ...common,
      DATABASE_URL: usersDb.url,
      DISCOVERY: "static",
      IDENTITY_TRUST: identity.trustText,
      USERS_BOOTSTRAP_SECRET: randomBytes(32).toString("base64url"),
      USERS_AUTH_MAX_FAILURES: String(MAX_FAILURES),
    },
  });
  const [l, u] = await Promise.all([
    legacy.waitForLog((x) => x.msg === "listening", 90_000),
    users.waitForLog((x) => x.msg === "listening", 90_000),
  ]);
  legacyUrl = `http://127.0.0.1:${l.port}`;
  usersUrl = `http://127.0.0.1:${u.port}`;
  await users.waitForLog((x) => x.msg === "health changed" && x.status === "SERVING", 90_000);
  gateway = createGateway({
    config: loadConfig({
      PORT: "0",
      ADMIN_PORT: "0",
      LOG_LEVEL: "silent",
      DISCOVERY: "static",
      UPSTREAMS: `users=${usersUrl}`,
      JWKS_URL: `${usersUrl}/.well-known/jwks.json`,
      IDENTITY_KEY: identity.keys.gateway?.privateKey,
      STRANGLER_LEGACY_URL: legacyUrl,
    }),
  });
  ({ url, adminUrl } = await gateway.start());
}, 180_000);

afterAll(async () => {
  await gateway?.stop();
  await Promise.all([legacy?.stop(), users?.stop()]);
  await lsql?.end({ timeout: 5 });
  await usql?.end({ timeout: 5 });
  await deleteNamespaceStreams(namespace, natsUrl);
  await Promise.all([usersDb?.drop(), legacyDb?.drop()]);
});

describe("strangler identity: legacy users -> users, their passwords and sessions on the mesh", () => {
  it("a user registered in legacy shows up in users (legacy's id, a customer) within the bound, and so does a change", async () => {
    const u = await legacyUser("sync");
    const created = await synced(u.id, u.started, () => true);
    const row = await meshRow(u.id);
    expect(row).toMatchObject({ email: u.email, display_name: "Legacy sync", roles: ["customer"] });
    const changedAt = performance.now();
    const newEmail = `moved.${u.email}`;
    await lsql`update users set email = ${newEmail}, display_name = 'Renamed' where id = ${u.id}`;
    const changed = await synced(
      u.id,
      changedAt,
      (r) => r.email === newEmail && r.display_name === "Renamed",
    );
    process.stdout.write(`legacy -> users: created in ${created} ms, email/name change in ${changed} ms\n`);
    expect(created).toBeLessThan(SYNC_BOUND_MS);
    expect(changed).toBeLessThan(SYNC_BOUND_MS);
  });

  it("a legacy user logs in to the mesh with the old password, which is then re-hashed to Argon2id", async () => {
    const u = await legacyUser("login", "my old password 1");
    await synced(u.id, u.started, () => true);
    expect((await meshRow(u.id))?.password_hash).toMatch(/^scrypt\$/);
    expect(await codeOf(usersClient().login({ email: u.email, password: "wrong password" }))).toBe(
      "Unauthenticated",
    );
    const res = await usersClient().login({ email: u.email, password: "my old password 1" });
    expect(decodeJwt(res.accessToken).sub).toBe(u.id);
    expect((await meshRow(u.id))?.password_hash).toMatch(/^\$argon2id\$/);
    // The re-hashed password still works, and a repeat of the same legacy capture does not undo it.
    await lsql`update users set display_name = 'Again' where id = ${u.id}`;
    await synced(u.id, performance.now(), (r) => r.display_name === "Again");
    expect((await meshRow(u.id))?.password_hash).toMatch(/^\$argon2id\$/);
    expect((await usersClient().login({ email: u.email, password: "my old password 1" })).user?.id).toBe(
      u.id,
    );
  });

  it("the raw messages on LEGACY_USERS hold no password hash, email or name: they travel sealed (issue 19, h19c, h19seal)", async () => {
    const u = await legacyUser("sealed", "a sealed password 1");
    await synced(u.id, u.started, () => true);
    // A change of email and name travels sealed too, and users opens it.
    const renamed = { email: `renamed.${u.email}`, name: `Sealed ${randomBytes(6).toString("hex")}` };
    const changedAt = performance.now();
    await lsql`update users set email = ${renamed.email}, display_name = ${renamed.name} where id = ${u.id}`;
    await synced(u.id, changedAt, (r) => r.email === renamed.email && r.display_name === renamed.name);
    const [row] = await lsql<{ password_hash: string }[]>`select password_hash from users where id = ${u.id}`;
    const hash = row?.password_hash ?? "";
    expect(hash).toMatch(/^scrypt\$/);
    // Every user in legacy (seeded, or created by this file, and the names they had before a
    // change): none of their emails or names is on the stream.
    const people = await lsql<
      { email: string; display_name: string }[]
    >`select email, display_name from users`;
    const personal = [u.email, renamed.email, renamed.name, "Legacy sealed", "Legacy sync", "Legacy login"];
    for (const p of people) personal.push(p.email, p.display_name, p.email.split("@")[0] ?? "");
    expect(people.length).toBeGreaterThan(0);
    const nc = await connectNats(natsUrl, "test");
    try {
      const jsm = await jetstreamManager(nc);
      const stream = streamName(namespace, "LEGACY_USERS");
      const { state } = await jsm.streams.info(stream);
      expect(state.messages).toBeGreaterThan(0);
      let mine = 0;
      for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        const data = Buffer.from(m?.data ?? []);
        // No scrypt hash of any user, in any message: not the prefix, not this user's salt or key.
        expect(data.includes(Buffer.from("scrypt$")), `message ${seq}`).toBe(false);
        for (const part of hash.split("$").filter((p) => p.length >= 16))
          expect(data.includes(Buffer.from(part)), `message ${seq}`).toBe(false);
        for (const value of personal.filter((v) => v.length >= 6))
          expect(data.includes(Buffer.from(value)), `message ${seq}: ${value}`).toBe(false);
        if (data.includes(Buffer.from(u.id))) mine++;
      }
      expect(mine).toBeGreaterThan(0);
    } finally {
      await nc.close();
    }
    // ...and users opened it: the legacy password works on the mesh, with the email as changed.
    const res = await usersClient().login({ email: renamed.email, password: "a sealed password 1" });
    expect(res.user).toMatchObject({ id: u.id, email: renamed.email, displayName: renamed.name });
  });

  it("exchanges a real legacy session (POST /api/login) for a mesh token of the same user", async () => {
    const u = await legacyUser("exchange");
    await synced(u.id, u.started, () => true);
    const res = await usersClient().exchangeLegacyToken({ legacyToken: u.token });
    expect(decodeJwt(res.accessToken)).toMatchObject({ sub: u.id, roles: ["customer"] });
    expect(res.user?.email).toBe(u.email);
  });

  it("locks the exchange like Login, but forged tokens never count: only failed logins lock a valid session out", async () => {
    const u = await legacyUser("lockout");
    await synced(u.id, u.started, () => true);
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(u.id)
      .setIssuer("legacy")
      .setExpirationTime("10m")
      .sign(new TextEncoder().encode("not-the-secret-".padEnd(40, "z")));
    for (let i = 0; i <= MAX_FAILURES; i++)
      expect(await codeOf(usersClient().exchangeLegacyToken({ legacyToken: forged }))).toBe(
        "Unauthenticated",
      );
    expect((await usersClient().exchangeLegacyToken({ legacyToken: u.token })).user?.id).toBe(u.id);
    for (let i = 0; i < MAX_FAILURES; i++)
      expect(await codeOf(usersClient().login({ email: u.email, password: "not my password" }))).toBe(
        "Unauthenticated",
      );
    expect(await codeOf(usersClient().exchangeLegacyToken({ legacyToken: u.token }))).toBe(
      "ResourceExhausted",
    );
    expect(await codeOf(usersClient().login({ email: u.email, password: u.password }))).toBe(
      "ResourceExhausted",
    );
  });

  it("leaves a mesh account alone when a legacy user has its email: the conflict is recorded, and the gateway serves that user from legacy", async () => {
    const { id, email, meshId, token } = await conflictingUser();
    const [sync] = await usql<{ conflict: string | null }[]>`
      select conflict from legacy_user_sync where user_id = ${id}`;
    expect(sync?.conflict).toMatch(/another account/);
    expect(await meshRow(id)).toBeUndefined();
    expect(await meshRow(meshId)).toMatchObject({ email, display_name: "Mesh" });
    // The mesh cannot hold this user yet (the exchange answers FAILED_PRECONDITION): on a route at
    // 100% the gateway serves their legacy session from legacy, not a 400, and counts it.
    await setRoute("GetUser", 100);
    try {
      const before = gateway?.strangler.stats.get("GetUser")?.fallbacks ?? 0;
      const served = await getViaGateway(`/api/users/${id}`, `Bearer ${token}`);
      expect(served).toMatchObject({ status: 200, side: "legacy", body: { id, email } });
      expect(gateway?.strangler.stats.get("GetUser")?.fallbacks).toBe(before + 1);
    } finally {
      await setRoute("GetUser", 0);
    }
  });

  it("the gateway exchanges a legacy session on a route at 100% and forwards it untouched at 0%", async () => {
    const u = await legacyUser("gateway");
    await synced(u.id, u.started, () => true);
    const bearer = `Bearer ${u.token}`;
    await setRoute("GetUser", 100);
    const fromNew = await getViaGateway(`/api/users/${u.id}`, bearer);
    expect(fromNew).toMatchObject({ status: 200, side: "new", body: { id: u.id, email: u.email } });
    expect(gateway?.strangler.sessions.size).toBe(1);
    expect((await getViaGateway(`/api/users/${u.id}`, bearer)).status).toBe(200);
    expect(gateway?.strangler.sessions.size).toBe(1); // served from the cache
    const bad = `${u.token.slice(0, -4)}AAAA`;
    const refused = await getViaGateway(`/api/users/${u.id}`, `Bearer ${bad}`);
    expect(refused).toMatchObject({ status: 401, side: "new", body: { error: "unauthenticated" } });
    expect(gateway?.strangler.sessions.size).toBe(1); // a failure is not cached
    await setRoute("GetUser", 0);
    // Legacy accepts only its own session: a 200 from it shows the token arrived untouched.
    const fromLegacy = await getViaGateway(`/api/users/${u.id}`, bearer);
    expect(fromLegacy).toMatchObject({ status: 200, side: "legacy", body: { id: u.id, email: u.email } });
  });

  // Review finding 4: behind Envoy, jwt_authn refused an old client's legacy session on a route
  // the new side answers. Envoy's ext_authz (run before jwt_authn) now exchanges it.
  it("Envoy's ext_authz (a gateway process) gives a legacy session on a transcoded REST call the same user's mesh token; a bad one gets legacy's 401", async () => {
    const u = await legacyUser("envoy");
    await synced(u.id, u.started, () => true);
    const gw = await startExtAuthzGateway();
    try {
      // The Check Envoy sends once its transcoder rewrote `GET /api/users/{id}` into GetUser.
      const check = (authorization: string, originalPath: string | null = `/api/users/${u.id}`) =>
        gw.check({
          method: "POST",
          path: "/meshwork.users.v1.UserService/GetUser",
          headers: {
            "content-type": "application/grpc",
            authorization,
            ...(originalPath
              ? { "x-envoy-original-path": originalPath, "x-envoy-original-method": "GET" }
              : {}),
          },
        });
      const ok = await check(`Bearer ${u.token}`);
      expect(ok).toMatchObject({ status: { code: 0 }, http_response: "ok_response" });
      const set = added(ok);
      const mesh = set.authorization?.replace(/^Bearer /, "") ?? "";
      // A mesh token of the same user, signed by the users service (what jwt_authn then verifies).
      const { payload } = await jwtVerify(
        mesh,
        createRemoteJWKSet(new URL(`${usersUrl}/.well-known/jwks.json`)),
        {
          issuer: "meshwork-users",
          audience: "meshwork",
        },
      );
      expect(payload).toMatchObject({ sub: u.id, roles: ["customer"] });
      // Forwarded as Envoy would, with the assertion set beside it, the users service serves that user.
      const got = await usersClient().getUser(
        { id: u.id },
        { headers: { "x-meshwork-identity": set["x-meshwork-identity"] ?? "" } },
      );
      expect(got.user?.email).toBe(u.email);
      // The same cache rules as the Node gateway: the second Check is answered from the cache.
      expect(added(await check(`Bearer ${u.token}`)).authorization).toBe(set.authorization);
      // A bad session: legacy's 401 shape (JSON), as the Node gateway answers it.
      const bad = await check(`Bearer ${u.token.slice(0, -4)}AAAA`);
      expectLegacy401(bad);
      // A legacy session on a gRPC call (not transcoded from the REST API) is not exchanged.
      const direct = await check(`Bearer ${u.token}`, null);
      expect(direct).toMatchObject({
        status: { code: Code.Unauthenticated },
        http_response: "denied_response",
      });
    } finally {
      await gw.stop();
    }
  });

  // Issue 19.2 behind Envoy: the call is sent back to legacy before the transcoder rewrites it.
  it("Envoy's side question (a gateway process, before the transcoder): a legacy session the mesh cannot hold yet goes to legacy; none, a held user's, a mesh token go on; a bad one gets legacy's 401", async () => {
    const held = await legacyUser("side");
    await synced(held.id, held.started, () => true);
    const stranger = await conflictingUser();
    const gw = await startExtAuthzGateway();
    try {
      // The Check of Envoy's `meshwork.legacy_side` filter: the old client's REST call as it came.
      const side = (path: string, authorization?: string) =>
        gw.check({
          method: "GET",
          path,
          headers: authorization ? { authorization } : {},
          contextExtensions: { "meshwork.question": "side" },
        });
      const goesOn = (a: CheckAnswer) => {
        expect(a).toMatchObject({ status: { code: 0 }, http_response: "ok_response" });
        // Nothing set: Envoy keeps the new side (it matches the route again only when one is).
        expect(a.ok_response?.headers).toEqual([]);
      };
      goesOn(await side(`/api/users/${held.id}`));
      goesOn(await side(`/api/users/${held.id}`, `Bearer ${held.token}`));
      const meshToken = (await usersClient().login({ email: held.email, password: held.password }))
        .accessToken;
      goesOn(await side(`/api/users/${held.id}`, `Bearer ${meshToken}`));
      // The Check after the transcoder then trades the held user's session for their mesh token.
      const after = await gw.check({
        method: "POST",
        path: "/meshwork.users.v1.UserService/GetUser",
        headers: {
          "content-type": "application/grpc",
          authorization: `Bearer ${held.token}`,
          "x-envoy-original-path": `/api/users/${held.id}`,
        },
      });
      expect(decodeJwt(added(after).authorization?.replace(/^Bearer /, "") ?? "").sub).toBe(held.id);

      // The user the mesh cannot hold yet: OK with `x-meshwork-side: legacy`, which sends the call
      // to legacy, untranscoded; legacy serves it with the session the client sent.
      const sent = await side(`/api/users/${stranger.id}`, `Bearer ${stranger.token}`);
      expect(sent).toMatchObject({ status: { code: 0 }, http_response: "ok_response" });
      expect(sent.ok_response?.headers.map((h) => [h.header.key, h.header.value])).toEqual([
        ["x-meshwork-side", "legacy"],
      ]);
      const res = await fetch(`${legacyUrl}/api/users/${stranger.id}`, {
        headers: { authorization: `Bearer ${stranger.token}` },
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ id: stranger.id, email: stranger.email });
      // Only on a REST call: the question on another path changes nothing.
      goesOn(await side("/meshwork.users.v1.UserService/GetUser", `Bearer ${stranger.token}`));

      // A bad session is refused at once with legacy's 401 shape, as the Node gateway answers it.
      expectLegacy401(await side(`/api/users/${held.id}`, `Bearer ${held.token.slice(0, -4)}AAAA`));
    } finally {
      await gw.stop();
    }
  });
});

/** A gateway process with its ext_authz server (as compose runs it for Envoy), and a Check client. */
async function startExtAuthzGateway() {
  const gw = startProcess(process.execPath, [gatewayMain], {
    env: {
      HOST: "127.0.0.1",
      PORT: "0",
      ADMIN_PORT: "0",
      EXT_AUTHZ_PORT: "0",
      LOG_LEVEL: "info",
      DISCOVERY: "static",
      // Static discovery declares nothing on NATS; the namespace is the test's all the same (a
      // service started under test refuses the default one).
      EVENTS_NAMESPACE: namespace,
      UPSTREAMS: `users=${usersUrl}`,
      JWKS_URL: `${usersUrl}/.well-known/jwks.json`,
      IDENTITY_KEY: identity.keys.gateway?.privateKey ?? "",
      STRANGLER_LEGACY_URL: legacyUrl,
    },
  });
  let authz: ReturnType<typeof grpcJsClient> | undefined;
  try {
    const { extAuthzPort } = await gw.waitForLog((x) => x.msg === "listening", 90_000);
    authz = grpcJsClient(
      loadGrpcJsPackage("envoy/service/auth/v3/external_auth.proto"),
      "envoy.service.auth.v3.Authorization",
      `127.0.0.1:${extAuthzPort}`,
    );
  } catch (err) {
    await gw.stop();
    throw err;
  }
  const client = authz;
  return {
    /** A Check as Envoy sends it, from 10.0.0.9. */
    check(http: {
      method: string;
      path: string;
      headers: Record<string, string>;
      contextExtensions?: Record<string, string>;
    }) {
      return grpcJsUnary<CheckAnswer>(client, "Check", {
        attributes: {
          source: { address: { socket_address: { address: "10.0.0.9", port_value: 40_000 } } },
          ...(http.contextExtensions ? { context_extensions: http.contextExtensions } : {}),
          request: {
            http: {
              method: http.method,
              path: http.path,
              headers: { ":authority": "edge.example.com", ...http.headers },
            },
          },
        },
      });
    },
    async stop() {
      client.close();
      await gw.stop();
    },
  };
}

/** Legacy's 401 for a bad session, as Envoy would answer it (JSON, `unauthenticated`). */
function expectLegacy401(a: CheckAnswer) {
  expect(a.http_response).toBe("denied_response");
  expect(a.status.code).toBe(Code.Unauthenticated);
  expect(a.denied_response?.status.code).toBe("Unauthorized");
  expect(JSON.parse(a.denied_response?.body ?? "{}")).toMatchObject({ error: "unauthenticated" });
  expect(a.denied_response?.headers.map((h) => [h.header.key, h.header.value])).toContainEqual([
    "content-type",
    "application/json",
  ]);
}

/** Envoy's CheckResponse as grpc-js decodes it (keepCase, enums as strings). */
interface CheckAnswer {
  status: { code: number; message: string };
  ok_response?: { headers: Array<{ header: { key: string; value: string } }> };
  denied_response?: {
    status: { code: string };
    body: string;
    headers: Array<{ header: { key: string; value: string } }>;
  };
  http_response: "ok_response" | "denied_response";
}

const added = (a: CheckAnswer): Record<string, string> =>
  Object.fromEntries((a.ok_response?.headers ?? []).map((h) => [h.header.key, h.header.value]));
