import { createServer, type Server } from "node:http";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { callerOf, createService, privateKeyFrom, type Service } from "@meshwork/runtime";
import { testIdentity, testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger } from "@meshwork/telemetry";
import { grpc, grpcJsClient, grpcJsUnary, loadGrpcJsPackage } from "@meshwork/testing";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway } from "./gateway.js";
import { parseRateLimits } from "./ratelimit.js";

const ISSUER = "meshwork-users";
const AUDIENCE = "meshwork";
const SUBJECT = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const identity = testIdentity(["gateway"]);

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

/**
 * Envoy's ext_authz filter asks the gateway's Authorization server about every call; these tests
 * ask it as Envoy does (a gRPC client of `envoy.service.auth.v3.Authorization`, grpc-js with the
 * vendored Envoy protos), then forward the call to a real service with the headers the answer
 * adds, as Envoy would: the service must accept the caller the assertion names.
 */
describe("Envoy's ext_authz server (the edge signs identities for Envoy)", () => {
  let gateway: Gateway;
  let users: Service;
  let usersUrl: string;
  let jwks: Server;
  let authz: grpc.Client;
  let token: (roles: string[], claims?: { iatOffsetS?: number; lifetimeS?: number }) => Promise<string>;
  const seen: Array<string | undefined> = [];

  beforeAll(async () => {
    const key = await generateKeyPair("ES256");
    const published: JWK[] = [{ ...(await exportJWK(key.publicKey)), kid: "k1", alg: "ES256", use: "sig" }];
    jwks = createServer((_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: published })),
    );
    await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
    const jwksPort = (jwks.address() as { port: number }).port;
    token = async (roles, claims = {}) => {
      const iat = Math.floor(Date.now() / 1000) + (claims.iatOffsetS ?? 0);
      return new SignJWT({ roles, email: "a@example.com" })
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .setSubject(SUBJECT)
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt(iat)
        .setExpirationTime(iat + (claims.lifetimeS ?? 600))
        .sign(key.privateKey);
    };
    // A real service that trusts the gateway's key, as every service of the mesh does.
    users = createService({
      name: "users",
      config: testRuntimeConfig({ identity: identity.config(undefined, ["users"]) }),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      routes(router) {
        router.service(UserService, {
          async getUser(req, ctx) {
            seen.push(callerOf(ctx)?.subject);
            return { user: create(UserSchema, { id: req.id, email: "a@example.com" }) };
          },
        });
      },
    });
    ({ url: usersUrl } = await users.start());
    gateway = createGateway({
      config: {
        host: "127.0.0.1",
        port: 0,
        adminHost: "127.0.0.1",
        adminPort: 0,
        extAuthzPort: 0,
        logLevel: "silent",
        upstreams: parseUpstreams(`users=${usersUrl}`),
        identityKey: privateKeyFrom(identity.keys.gateway?.privateKey ?? ""),
        jwksUrl: `http://127.0.0.1:${jwksPort}/.well-known/jwks.json`,
        jwksCooldownMs: 300,
        jwtIssuer: ISSUER,
        jwtAudience: AUDIENCE,
        jwtMaxLifetimeS: 3_600,
        // Two GetUser calls per subject a minute: the third is refused, as through the Node gateway.
        rateLimits: parseRateLimits("meshwork.users.v1.UserService/GetUser=2/1m"),
        authRateLimits: [],
        corsOrigins: [],
        maxRequestBytes: 1024 * 1024,
        retryMaxAttempts: 1,
        defaultTimeoutMs: 5_000,
        maxTimeoutMs: 10_000,
        shutdownGraceMs: 1_000,
      },
      logger: createLogger({ service: "gateway", level: "silent" }),
    });
    const started = await gateway.start();
    expect(started.extAuthzPort).toBeGreaterThan(0);
    const pkg = loadGrpcJsPackage("envoy/service/auth/v3/external_auth.proto");
    authz = grpcJsClient(pkg, "envoy.service.auth.v3.Authorization", `127.0.0.1:${started.extAuthzPort}`);
  });
  afterAll(async () => {
    authz?.close();
    await gateway?.stop();
    await users?.shutdown();
    jwks?.close();
  });

  /** A Check as Envoy sends it for a gRPC call to `path` from 10.0.0.7. */
  const check = (path: string, headers: Record<string, string> = {}) =>
    grpcJsUnary<CheckAnswer>(authz, "Check", {
      attributes: {
        source: { address: { socket_address: { address: "10.0.0.7", port_value: 40_000 } } },
        request: {
          http: {
            method: "POST",
            path,
            host: "edge.example.com",
            scheme: "http",
            protocol: "HTTP/2",
            headers: {
              ":authority": "edge.example.com",
              "content-type": "application/grpc",
              te: "trailers",
              ...headers,
            },
          },
        },
      },
    });
  const added = (a: CheckAnswer) =>
    Object.fromEntries((a.ok_response?.headers ?? []).map((h) => [h.header.key, h.header.value]));

  it("allows a verified caller and signs it for the upstream; the service accepts the assertion", async () => {
    const answer = await check("/meshwork.users.v1.UserService/GetUser", {
      authorization: `Bearer ${await token(["customer"])}`,
    });
    expect(answer.status.code).toBe(0);
    expect(answer.http_response).toBe("ok_response");
    const assertion = added(answer)["x-meshwork-identity"];
    expect(assertion).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // Envoy forwards the call with the header added: the service sees the token's subject.
    const client = createClient(UserService, createGrpcTransport({ baseUrl: usersUrl }));
    await client.getUser({ id: SUBJECT }, { headers: { "x-meshwork-identity": assertion as string } });
    expect(seen.at(-1)).toBe(SUBJECT);
    // Without it (what Envoy sent before this server existed), the service refuses the caller.
    await expect(client.getUser({ id: SUBJECT })).rejects.toMatchObject({ code: 16 });
  });

  it("refuses what the Node gateway refuses, with the status Envoy answers", async () => {
    // No token for an authenticated method: 401 (UNAUTHENTICATED for gRPC clients through Envoy).
    let a = await check("/meshwork.users.v1.UserService/GetUser");
    expect(a.http_response).toBe("denied_response");
    expect(a.status).toMatchObject({ code: 16, message: "missing bearer token" });
    expect(a.denied_response?.status.code).toBe("Unauthorized");
    // A customer calling an admin method: 403.
    a = await check("/meshwork.users.v1.UserService/ListUsers", {
      authorization: `Bearer ${await token(["customer"])}`,
    });
    expect(a.status).toMatchObject({ code: 7, message: "role admin required" });
    expect(a.denied_response?.status.code).toBe("Forbidden");
    // A token issued in the future (iat), and one living longer than JWT_MAX_LIFETIME_S: 401.
    a = await check("/meshwork.users.v1.UserService/GetUser", {
      authorization: `Bearer ${await token(["customer"], { iatOffsetS: 3_600 })}`,
    });
    expect(a.status).toMatchObject({ code: 16, message: "token issued in the future (iat)" });
    a = await check("/meshwork.users.v1.UserService/GetUser", {
      authorization: `Bearer ${await token(["customer"], { lifetimeS: 7_200 })}`,
    });
    expect(a.status.message).toContain("exceeds the maximum of 3600 s");
    // A forged token: 401.
    a = await check("/meshwork.users.v1.UserService/GetUser", { authorization: "Bearer not.a.token" });
    expect(a.status).toMatchObject({ code: 16, message: "invalid token" });
    // A method no contract declares: 404 (UNIMPLEMENTED for gRPC clients).
    a = await check("/meshwork.users.v1.UserService/DropAllUsers");
    expect(a.status.code).toBe(12);
    expect(a.denied_response?.status.code).toBe("NotFound");
    // A malformed deadline: 400.
    a = await check("/meshwork.users.v1.UserService/GetUser", { "grpc-timeout": "soon" });
    expect(a.status.code).toBe(3);
    expect(a.denied_response?.status.code).toBe("BadRequest");
  });

  it("lets anonymous calls to public methods through without an assertion", async () => {
    const a = await check("/meshwork.users.v1.UserService/Login");
    expect(a.status.code).toBe(0);
    expect(added(a)["x-meshwork-identity"]).toBeUndefined();
  });

  it("applies the per-subject rate limit: 429 with retry-after once it is spent", async () => {
    const bearer = { authorization: `Bearer ${await token(["customer"])}` };
    const codes: number[] = [];
    let last: CheckAnswer | undefined;
    // The first test spent one of this subject's two GetUser calls.
    for (let i = 0; i < 3; i++) {
      last = await check("/meshwork.users.v1.UserService/GetUser", bearer);
      codes.push(last.status.code);
    }
    expect(codes).toEqual([0, 8, 8]);
    expect(last?.denied_response?.status.code).toBe("TooManyRequests");
    const retryAfter = last?.denied_response?.headers.find((h) => h.header.key === "retry-after");
    expect(Number(retryAfter?.header.value)).toBeGreaterThan(0);
  });

  it("answers Envoy's side question (strangler fig) before any route: a caller with no legacy session goes on unchanged", async () => {
    /** The Check of the `meshwork.legacy_side` filter: the REST call, untranscoded, with the question. */
    const side = (path: string, headers: Record<string, string> = {}) =>
      grpcJsUnary<CheckAnswer>(authz, "Check", {
        attributes: {
          source: { address: { socket_address: { address: "10.0.0.7", port_value: 40_000 } } },
          context_extensions: { "meshwork.question": "side" },
          request: {
            http: { method: "GET", path, headers: { ":authority": "edge.example.com", ...headers } },
          },
        },
      });
    // No session: OK with nothing to add, so Envoy keeps the route it picked (the new side).
    let a = await side("/api/products?page_size=2");
    expect(a).toMatchObject({ status: { code: 0 }, http_response: "ok_response" });
    expect(a.ok_response?.headers).toEqual([]);
    // A mesh token is no legacy session: the same (the Check after the transcoder verifies it).
    a = await side(`/api/users/${SUBJECT}`, { authorization: `Bearer ${await token(["customer"])}` });
    expect(a).toMatchObject({ status: { code: 0 }, http_response: "ok_response" });
    expect(a.ok_response?.headers).toEqual([]);
    // Without the question, a REST path is no route of the table: refused, as before.
    a = await check("/api/products");
    expect(a).toMatchObject({ status: { code: 12 }, http_response: "denied_response" });
  });

  it("answers a Check without the call to authorize with INVALID_ARGUMENT, and keeps serving", async () => {
    await expect(grpcJsUnary(authz, "Check", { attributes: {} })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringContaining("attributes.request.http.path is required"),
    });
    const a = await check("/meshwork.users.v1.UserService/Login");
    expect(a.status.code).toBe(0);
  });
});
