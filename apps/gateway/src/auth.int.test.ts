import { createServer, type Server } from "node:http";
import { create, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { meshworkFiles } from "@meshwork/contracts";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { createService, privateKeyFrom, type Service } from "@meshwork/runtime";
import { testIdentity, testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { exportJWK, generateKeyPair, type JWK, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Policy, policiesOf } from "./auth.js";
import { createGateway, type Gateway } from "./gateway.js";

const ISSUER = "meshwork-users";
const AUDIENCE = "meshwork";
const SUBJECT = "5b0e4c1e-2f7a-4d0b-8f6e-9b1f2a3c4d5e";

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

/** The gateway's identity key, which the upstream trusts; it answers for every cluster. */
const identity = testIdentity(["gateway"]);
const CLUSTERS = ["users", "notifications", "inventory", "payments", "orders"];

/** A valid request for every method of the contracts, so whatever passes the gateway answers OK. */
const samples: Record<string, Record<string, unknown>> = {
  RegisterUser: { email: "a@example.com", password: "long enough pw", displayName: "A" },
  Login: { email: "a@example.com", password: "long enough pw" },
  CreateFirstAdmin: {
    bootstrapSecret: "a bootstrap secret",
    email: "a@example.com",
    password: "long enough password",
    displayName: "A",
  },
  GetUser: { id: SUBJECT },
  ExchangeLegacyToken: { legacyToken: "a legacy session token" },
  ListUsers: {},
  RotateSigningKey: {},
  ListNotifications: { userId: SUBJECT },
  CreateProduct: { sku: "SKU-1", name: "Thing", price: { amountMinor: 100n, currency: "EUR" } },
  GetProduct: { id: SUBJECT },
  ListProducts: {},
  UpdateProduct: { id: SUBJECT, name: "Renamed" },
  AdjustStock: { productId: SUBJECT, delta: 1n },
  ReserveStock: { reservationId: SUBJECT, items: [{ productId: SUBJECT, quantity: 1n }] },
  ReleaseReservation: { reservationId: SUBJECT },
  CommitReservation: { reservationId: SUBJECT },
  AuthorizePayment: { paymentId: SUBJECT, userId: SUBJECT, amount: { amountMinor: 100n, currency: "EUR" } },
  CapturePayment: { paymentId: SUBJECT },
  VoidPayment: { paymentId: SUBJECT },
  RefundPayment: { paymentId: SUBJECT },
  GetPayment: { paymentId: SUBJECT },
  GetProviderLedger: { paymentId: SUBJECT },
  SetFaults: { faults: {} },
  GetFaults: {},
  GetReservation: { reservationId: SUBJECT },
  AuditStock: {},
  PlaceOrder: { idempotencyKey: "key-12345", items: [{ productId: SUBJECT, quantity: 1n }] },
  GetOrder: { id: SUBJECT },
  ListOrders: {},
  CancelOrder: { id: SUBJECT },
  WatchOrder: { id: SUBJECT },
  ListSagas: {},
  GetSaga: { id: SUBJECT },
};

/**
 * The upstream: every service of the contracts in one process, answering OK and recording the
 * identity headers, which the runtime sets from the gateway's verified assertion.
 */
async function startUpstream() {
  const seen: Array<{ method: string; subject: string | null; roles: string | null }> = [];
  const record = (method: string, h: Headers) =>
    seen.push({ method, subject: h.get("x-meshwork-subject"), roles: h.get("x-meshwork-roles") });
  const service: Service = createService({
    name: "upstream",
    config: testRuntimeConfig({ identity: identity.config(undefined, CLUSTERS) }),
    files: meshworkFiles,
    services: meshworkFiles.flatMap((f) => f.services),
    routes(router) {
      router.service(UserService, {
        async registerUser(_r, ctx) {
          record("RegisterUser", ctx.requestHeader);
          return {};
        },
        async login(_r, ctx) {
          record("Login", ctx.requestHeader);
          return { accessToken: "t", tokenType: "Bearer" };
        },
        async getUser(_r, ctx) {
          record("GetUser", ctx.requestHeader);
          return {};
        },
        async listUsers(_r, ctx) {
          record("ListUsers", ctx.requestHeader);
          return {};
        },
        async rotateSigningKey(_r, ctx) {
          record("RotateSigningKey", ctx.requestHeader);
          return {};
        },
        async createFirstAdmin(_r, ctx) {
          record("CreateFirstAdmin", ctx.requestHeader);
          return {};
        },
        async exchangeLegacyToken(_r, ctx) {
          record("ExchangeLegacyToken", ctx.requestHeader);
          return {};
        },
      });
      for (const svc of meshworkFiles.flatMap((f) => f.services)) {
        if (svc.typeName === UserService.typeName) continue;
        router.service(
          svc,
          Object.fromEntries(
            svc.methods.map((m) => [
              m.localName,
              m.methodKind === "server_streaming"
                ? async function* (_r: unknown, ctx: { requestHeader: Headers }) {
                    record(m.name, ctx.requestHeader);
                    yield {};
                  }
                : async (_r: unknown, ctx: { requestHeader: Headers }) => {
                    record(m.name, ctx.requestHeader);
                    return {};
                  },
            ]),
          ) as never, // one recording handler for every method of every service
        );
      }
    },
  });
  const { url } = await service.start();
  return { service, url, seen };
}

describe("authentication and authorisation at the gateway (policies from the contracts)", () => {
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let gateway: Gateway;
  let url: string;
  let jwks: Server;
  const published: JWK[] = [];
  let fetches = 0;
  let key: KeyPair;
  let other: KeyPair;

  const sign = (k: KeyPair, kid: string, claims: { roles: string[]; aud?: string; expSeconds?: number }) =>
    new SignJWT({ roles: claims.roles, email: "a@example.com" })
      .setProtectedHeader({ alg: "ES256", kid })
      .setSubject(SUBJECT)
      .setIssuer(ISSUER)
      .setAudience(claims.aud ?? AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + (claims.expSeconds ?? 600))
      .sign(k.privateKey);

  beforeAll(async () => {
    key = await generateKeyPair("ES256");
    other = await generateKeyPair("ES256");
    published.push({ ...(await exportJWK(key.publicKey)), kid: "k1", alg: "ES256", use: "sig" });
    jwks = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: published }));
    });
    await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
    const jwksPort = (jwks.address() as { port: number }).port;
    upstream = await startUpstream();
    gateway = createGateway({
      config: {
        host: "127.0.0.1",
        port: 0,
        adminHost: "127.0.0.1",
        adminPort: 0,
        logLevel: "silent",
        upstreams: parseUpstreams(CLUSTERS.map((c) => `${c}=${upstream.url}`).join(";")),
        identityKey: privateKeyFrom(identity.keys.gateway?.privateKey ?? ""),
        jwksUrl: `http://127.0.0.1:${jwksPort}/.well-known/jwks.json`,
        jwksCooldownMs: 300,
        jwtIssuer: ISSUER,
        jwtAudience: AUDIENCE,
        jwtMaxLifetimeS: 3_600,
        rateLimits: [],
        // Policies, not limits, are under test here: each method is called once per kind of token.
        authRateLimits: [],
        corsOrigins: [],
        maxRequestBytes: 1024 * 1024,
        retryMaxAttempts: 3,
        defaultTimeoutMs: 5_000,
        maxTimeoutMs: 10_000,
        shutdownGraceMs: 1_000,
      },
      logger: createLogger({ service: "gateway", level: "silent" }),
    });
    ({ url } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.service.shutdown();
    jwks?.close();
  });

  // One connection for every call: a connection per call, left open, would meet the gateway's
  // limit of connections per address (256) before the last method is called.
  let transport: ReturnType<typeof createGrpcTransport> | undefined;
  const call = async (
    service: DescService,
    method: DescMethod,
    authorization?: string,
    extra: Record<string, string> = {},
  ) => {
    transport ??= createGrpcTransport({ baseUrl: url });
    const client = createClient(service, transport) as unknown as Record<
      string,
      (req: unknown, opts: { headers: Record<string, string> }) => Promise<unknown>
    >;
    const headers: Record<string, string> = { ...extra };
    if (authorization) headers.authorization = authorization;
    const fn = client[method.localName];
    if (!fn) throw new Error(`no ${method.localName}`);
    try {
      const res = fn(create(method.input, samples[method.name] as never), { headers }) as unknown;
      if (method.methodKind === "server_streaming") for await (const _ of res as AsyncIterable<unknown>);
      else await res;
      return "OK";
    } catch (err) {
      return Code[ConnectError.from(err).code] as string;
    }
  };

  it("every method of every service gives exactly the expected code for every kind of token", async () => {
    const tokens = {
      none: undefined,
      expired: `Bearer ${await sign(key, "k1", { roles: ["customer", "admin"], expSeconds: -120 })}`,
      "wrong signature": `Bearer ${await sign(other, "k1", { roles: ["customer", "admin"] })}`,
      "alg none": `Bearer ${new UnsecuredJWT({ roles: ["customer", "admin"] }).setSubject(SUBJECT).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime("10m").encode()}`,
      "wrong audience": `Bearer ${await sign(key, "k1", { roles: ["customer", "admin"], aud: "someone-else" })}`,
      valid: `Bearer ${await sign(key, "k1", { roles: ["customer", "admin"] })}`,
      "valid without the role": `Bearer ${await sign(key, "k1", { roles: ["customer"] })}`,
      "valid service": `Bearer ${await sign(key, "k1", { roles: ["service"] })}`,
    } as const;
    const roles: Record<string, string[]> = {
      valid: ["customer", "admin"],
      "valid without the role": ["customer"],
      "valid service": ["service"],
    };
    const expected = (policy: Policy, token: keyof typeof tokens): string => {
      if (policy.kind === "none") return "PermissionDenied";
      if (token === "none") return policy.kind === "public" ? "OK" : "Unauthenticated";
      const held = roles[token];
      if (!held) return "Unauthenticated";
      return policy.kind === "role" && !held.includes(policy.role) ? "PermissionDenied" : "OK";
    };
    const services = meshworkFiles.flatMap((f) => f.services);
    const policies = policiesOf(services);
    const got: string[] = [];
    const want: string[] = [];
    let rows = 0;
    for (const service of services) {
      for (const method of service.methods) {
        const policy = policies.get(`/${service.typeName}/${method.name}`) as Policy;
        expect(policy.kind, `${method.name} declares a policy`).not.toBe("none");
        for (const [name, token] of Object.entries(tokens) as Array<
          [keyof typeof tokens, string | undefined]
        >) {
          rows++;
          got.push(`${service.name}.${method.name} / ${name}: ${await call(service, method, token)}`);
          want.push(`${service.name}.${method.name} / ${name}: ${expected(policy, name)}`);
        }
      }
    }
    expect(got).toEqual(want);
    expect(rows).toBe(33 * 8); // 33 methods (ExchangeLegacyToken the newest)
    // The policies as declared in the protos.
    expect(Object.fromEntries([...policies].map(([k, v]) => [k.split("/")[2], v]))).toEqual({
      RegisterUser: { kind: "public" },
      Login: { kind: "public" },
      CreateFirstAdmin: { kind: "public" },
      ExchangeLegacyToken: { kind: "public" },
      GetUser: { kind: "authenticated" },
      ListUsers: { kind: "role", role: "admin" },
      RotateSigningKey: { kind: "role", role: "admin" },
      ListNotifications: { kind: "authenticated" },
      CreateProduct: { kind: "role", role: "admin" },
      GetProduct: { kind: "public" },
      ListProducts: { kind: "public" },
      UpdateProduct: { kind: "role", role: "admin" },
      AdjustStock: { kind: "role", role: "admin" },
      ReserveStock: { kind: "role", role: "service" },
      ReleaseReservation: { kind: "role", role: "service" },
      CommitReservation: { kind: "role", role: "service" },
      AuthorizePayment: { kind: "role", role: "service" },
      CapturePayment: { kind: "role", role: "service" },
      VoidPayment: { kind: "role", role: "service" },
      RefundPayment: { kind: "role", role: "service" },
      GetPayment: { kind: "role", role: "admin" },
      GetProviderLedger: { kind: "role", role: "admin" },
      SetFaults: { kind: "role", role: "admin" },
      GetFaults: { kind: "role", role: "admin" },
      GetReservation: { kind: "role", role: "admin" },
      AuditStock: { kind: "role", role: "admin" },
      PlaceOrder: { kind: "authenticated" },
      GetOrder: { kind: "authenticated" },
      ListOrders: { kind: "authenticated" },
      CancelOrder: { kind: "authenticated" },
      WatchOrder: { kind: "authenticated" },
      ListSagas: { kind: "role", role: "admin" },
      GetSaga: { kind: "role", role: "admin" },
    });
    // One fetch of the key set served every verification.
    expect(fetches).toBe(1);
  });

  it("never lets a spoofed identity header through, and passes the verified one", async () => {
    const spoof = { "x-meshwork-subject": "someone-else", "x-meshwork-roles": "admin" };
    const before = upstream.seen.length;
    expect(await call(UserService, UserService.method.registerUser, undefined, spoof)).toBe("OK");
    expect(upstream.seen[before]).toEqual({ method: "RegisterUser", subject: null, roles: null });
    const token = `Bearer ${await sign(key, "k1", { roles: ["customer"] })}`;
    expect(await call(UserService, UserService.method.getUser, token, spoof)).toBe("OK");
    expect(upstream.seen[before + 1]).toEqual({ method: "GetUser", subject: SUBJECT, roles: "customer" });
    // The role claim comes from the token only: a spoofed role header does not open ListUsers.
    expect(await call(UserService, UserService.method.listUsers, token, spoof)).toBe("PermissionDenied");
  });

  it("fetches the key set again when a token names a key it has not seen (rotation)", async () => {
    const rotated = await generateKeyPair("ES256");
    published.push({ ...(await exportJWK(rotated.publicKey)), kid: "k2", alg: "ES256", use: "sig" });
    const before = fetches;
    const token = `Bearer ${await sign(rotated, "k2", { roles: ["customer"] })}`;
    // Within the cool-down after the last fetch an unknown kid is refused; then it is fetched.
    await waitFor(async () => (await call(UserService, UserService.method.getUser, token)) === "OK", {
      what: "the rotated key to be fetched",
    });
    expect(fetches).toBeGreaterThan(before);
    // And a token under an unknown kid that no refetch can find is refused, not an error.
    const stray = `Bearer ${await sign(rotated, "k9", { roles: ["customer"] })}`;
    expect(await call(UserService, UserService.method.getUser, stray)).toBe("Unauthenticated");
  });

  // Issue 25.9: a token may not claim to come from the future, nor to live longer than allowed.
  it.each([
    ["issued 2 minutes in the future", { iat: 120, exp: 600 }, "Unauthenticated"],
    ["issued 10 s in the future (within the clock skew)", { iat: 10, exp: 600 }, "OK"],
    ["living 2 hours (the maximum is 1)", { iat: 0, exp: 7_200 }, "Unauthenticated"],
    ["living exactly the maximum", { iat: -60, exp: 3_540 }, "OK"],
    ["issued long ago, for a day, not yet expired", { iat: -80_000, exp: 6_400 }, "Unauthenticated"],
    ["without iat", { exp: 600 }, "Unauthenticated"],
  ] as const)("a token %s: %s", async (_what, times, code) => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ roles: ["customer"] })
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setSubject(SUBJECT)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(now + times.exp);
    if ("iat" in times) jwt.setIssuedAt(now + times.iat);
    const token = `Bearer ${await jwt.sign(key.privateKey)}`;
    expect(await call(UserService, UserService.method.getUser, token)).toBe(code);
  });

  it("names why: a future iat and an over-long lifetime", async () => {
    const now = Math.floor(Date.now() / 1000);
    const signed = (iat: number, exp: number) =>
      new SignJWT({ roles: ["customer"] })
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .setSubject(SUBJECT)
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(key.privateKey);
    const client = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    const reason = async (token: string) =>
      client.getUser({ id: SUBJECT }, { headers: { authorization: `Bearer ${token}` } }).then(
        () => "OK",
        (e: unknown) => ConnectError.from(e).rawMessage,
      );
    expect(await reason(await signed(now + 300, now + 900))).toBe("token issued in the future (iat)");
    expect(await reason(await signed(now, now + 3_601))).toBe(
      "token lifetime (exp - iat) exceeds the maximum of 3600 s",
    );
  });

  // Issue 25.9: with no origin configured (the default), browsers get no CORS at all.
  it("refuses every preflight when no CORS origin is configured, and sends no CORS headers", async () => {
    for (const origin of ["https://app.example", "null", url]) {
      const res = await fetch(`${url}/meshwork.users.v1.UserService/Login`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
      expect(res.status).toBe(403);
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
      expect(res.headers.get("access-control-allow-headers")).toBeNull();
    }
    const call = await fetch(`${url}/meshwork.users.v1.UserService/Login`, {
      method: "POST",
      headers: { origin: "https://app.example", "content-type": "application/json" },
      body: JSON.stringify({ email: "a@example.com", password: "long enough pw" }),
    });
    expect(call.status).toBe(200);
    expect(call.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("keeps a verified token only until it expires", async () => {
    const token = `Bearer ${await sign(key, "k1", { roles: ["customer"], expSeconds: 2 })}`;
    expect(await call(UserService, UserService.method.getUser, token)).toBe("OK");
    expect(await call(UserService, UserService.method.getUser, token)).toBe("OK"); // from the cache
    await waitFor(
      async () => (await call(UserService, UserService.method.getUser, token)) === "Unauthenticated",
      {
        what: "the cached token to expire",
        timeoutMs: 10_000,
      },
    );
  });
});
