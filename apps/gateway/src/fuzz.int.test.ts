import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { meshworkFiles } from "@meshwork/contracts";
import {
  answerStatus,
  type FuzzRequest,
  fuzzParameters,
  fuzzRequestArb,
  isInternal,
  loadCorpus,
  rawExchange,
} from "@meshwork/testing";
import fc from "fast-check";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startUsersUpstream, testGatewayConfig, type UsersUpstream } from "../test/users-upstream.js";
import { createAuthenticator } from "./auth.js";
import { createGateway, type Gateway } from "./gateway.js";
import { deadlineOf } from "./proxy/admission.js";
import { matchRoute } from "./routes.js";

// Issue 26.3: fuzz properties of the gateway's request parsing (grpc-timeout, route lookup, JWT
// parsing, and whole requests in gRPC, gRPC-Web and Connect framing over real sockets). The corpus
// files in fuzz-corpus/ run first every time; FUZZ_RUNS=100000 npm run fuzz runs long.

const corpus = <T>(name: string) => loadCorpus<T>(new URL(`../fuzz-corpus/${name}.json`, import.meta.url));
const PATHS = meshworkFiles
  .flatMap((f) => f.services.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)))
  .filter((p) => !p.endsWith("/WatchOrder") && !p.endsWith("/Watch"));

describe("deadlineOf (grpc-timeout, connect-timeout-ms)", () => {
  it("never throws: a deadline within the maximum, or an error naming the header", () => {
    const header = fc.option(fc.oneof(fc.string({ maxLength: 14 }), fc.stringMatching(/^\d{1,10}[HMSmun]$/)));
    fc.assert(
      fc.property(fc.tuple(header, header), ([grpcTimeout, connectTimeout]) => {
        const headers = {
          ...(grpcTimeout !== null ? { "grpc-timeout": grpcTimeout } : {}),
          ...(connectTimeout !== null ? { "connect-timeout-ms": connectTimeout } : {}),
        };
        const d = deadlineOf(headers, 5_000, 20_000);
        if (d.error !== undefined) expect(d.error).toMatch(/timeout/i);
        else {
          expect(Number.isFinite(d.ms)).toBe(true);
          expect(d.ms).toBeGreaterThanOrEqual(0);
          expect(d.ms).toBeLessThanOrEqual(20_000);
        }
      }),
      fuzzParameters(corpus<[string | null, string | null]>("grpc-timeout"), 5_000),
    );
  });
});

describe("matchRoute", () => {
  it("never throws; a match is the route whose prefix the path starts with", () => {
    const table = new Map(
      meshworkFiles.flatMap((f) => f.services.map((s) => [`/${s.typeName}/`, { prefix: `/${s.typeName}/` }])),
    ) as unknown as Parameters<typeof matchRoute>[0];
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 60 }),
          fc.constantFrom(...PATHS).map((p) => p.slice(0, -1)),
        ),
        (path) => {
          const r = matchRoute(table, path);
          if (r) expect(path.startsWith(r.prefix)).toBe(true);
        },
      ),
      fuzzParameters<string>([], 5_000),
    );
  });
});

describe("JWT parsing", () => {
  let jwks: http.Server;
  let auth: ReturnType<typeof createAuthenticator>;
  let key: Awaited<ReturnType<typeof generateKeyPair>>;

  beforeAll(async () => {
    key = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(key.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    jwks = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
    auth = createAuthenticator({
      jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`,
      cooldownMs: 0,
      issuer: "meshwork-users",
      audience: "meshwork",
    });
  });
  afterAll(async () => {
    await auth?.close();
    await new Promise((r) => jwks?.close(r));
  });

  const b64 = (v: unknown) =>
    Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
  const jsonish = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.dictionary(
      fc.constantFrom(
        "alg",
        "kid",
        "typ",
        "crit",
        "b64",
        "jwk",
        "iss",
        "aud",
        "sub",
        "exp",
        "iat",
        "nbf",
        "roles",
      ),
      fc.jsonValue({ maxDepth: 1 }),
    ),
  );
  const tokenArb = fc.oneof(
    fc.stringMatching(/^[A-Za-z0-9_.-]{0,80}$/),
    fc
      .tuple(jsonish, jsonish, fc.stringMatching(/^[A-Za-z0-9_-]{0,90}$/))
      .map(([h, p, s]) => `${b64(h)}.${b64(p)}.${s}`),
    fc
      .tuple(
        fc.record({
          alg: fc.constantFrom("ES256", "none", "HS256", "RS256"),
          kid: fc.constantFrom("k1", "k2", ""),
        }),
        jsonish,
        fc.stringMatching(/^[A-Za-z0-9_-]{0,90}$/),
      )
      .map(([h, p, s]) => `${b64(h)}.${b64(p)}.${s}`),
    // Really signed with the key, with any claims: only a well-formed, current one passes.
    fc
      .record({
        sub: fc.option(fc.string({ maxLength: 8 })),
        iss: fc.constantFrom("meshwork-users", "other"),
        iat: fc.integer({ min: -1e10, max: 1e10 }),
        exp: fc.integer({ min: -1e10, max: 1e10 }),
        roles: fc.jsonValue({ maxDepth: 1 }),
      })
      .map((c) => ({ ...c, signed: true as const })),
  );

  it("any bearer token: never throws, answers in time, UNAUTHENTICATED or PERMISSION_DENIED when refused", async () => {
    await fc.assert(
      fc.asyncProperty(tokenArb, async (t) => {
        let token: string;
        if (typeof t === "string") token = t;
        else {
          const jwt = new SignJWT({ roles: t.roles, ...(t.sub !== null ? { sub: t.sub } : {}) })
            .setProtectedHeader({ alg: "ES256", kid: "k1" })
            .setIssuer(t.iss)
            .setAudience("meshwork")
            .setIssuedAt(t.iat)
            .setExpirationTime(t.exp);
          token = await jwt.sign(key.privateKey);
        }
        const started = Date.now();
        const r = await auth.authorize({ kind: "role", role: "admin" }, `Bearer ${token}`);
        // Within the gateway's default call deadline (5 s), even on a loaded machine.
        expect(Date.now() - started).toBeLessThan(5_000);
        if (!r.ok) {
          expect([Code.Unauthenticated, Code.PermissionDenied], `${Code[r.code]}: ${r.message}`).toContain(
            r.code,
          );
          expect(r.message.length).toBeGreaterThan(0);
        }
      }),
      fuzzParameters(corpus<string>("jwt"), 300),
    );
  });
});

describe("whole requests through a gateway over real sockets", () => {
  let upstream: UsersUpstream;
  let gateway: Gateway;
  let url: string;
  beforeAll(async () => {
    upstream = await startUsersUpstream();
    const openPolicies = new Map(PATHS.map((p) => [p, { kind: "public" } as const]));
    gateway = createGateway({ config: testGatewayConfig(upstream.url), policies: openPolicies });
    ({ url } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.service.shutdown();
  });

  it("answers any request in time, never INTERNAL, and its memory stays flat", async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    await fc.assert(
      fc.asyncProperty(fuzzRequestArb(PATHS), async (req: FuzzRequest) => {
        const a = await rawExchange(url, req, 7_000);
        expect(a.timedOut, "no answer within 7 s").toBe(false);
        expect(isInternal(a), `INTERNAL: ${JSON.stringify(answerStatus(a))}`).toBe(false);
      }),
      fuzzParameters(corpus<FuzzRequest>("requests"), 80),
    );
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
  });
});
