import { createServer, type Server } from "node:http";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { cacheBucket, decodeEntry, type Entry } from "@meshwork/cache";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { connectNats } from "@meshwork/events";
import { createService, privateKeyFrom, type Service } from "@meshwork/runtime";
import { testIdentity, testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger } from "@meshwork/telemetry";
import { startNatsServer, type TestNatsServer, uniqueName, waitFor } from "@meshwork/testing";
import { Kvm } from "@nats-io/kv";
import { Redis } from "ioredis";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JwksSharedConfig } from "./config.js";
import { createGateway, type Gateway } from "./gateway.js";
import { jwksCacheKey } from "./jwks.js";

const ISSUER = "meshwork-users";
const AUDIENCE = "meshwork";
const SUBJECT = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
// Long enough that a call made right after a fetch is still within it on a loaded machine (CI,
// full gateway suite at load ~20: 'expected OK to be 16' with 300 ms).
const COOLDOWN_MS = 3_000;
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const identity = testIdentity(["gateway"]);

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

/**
 * Issue 18.3: the gateway's JWKS goes through the multi-level cache. Real gateways (their proxy
 * in front of a real users service that trusts their assertions), a JWKS server that counts its
 * requests, and the shared tier on the real NATS KV or Redis (a private nats-server for the
 * outage).
 */
describe("the gateway's JWKS through the multi-level cache", () => {
  let users: Service;
  let usersUrl: string;
  let jwksServer: Server;
  let jwksUrl: string;
  const published: JWK[] = [];
  let fetches = 0;
  const keys = new Map<string, KeyPair>();
  const gateways: Gateway[] = [];

  const addKey = async (kid: string) => {
    const k = await generateKeyPair("ES256");
    keys.set(kid, k);
    published.push({ ...(await exportJWK(k.publicKey)), kid, alg: "ES256", use: "sig" });
  };
  const token = (kid: string) =>
    new SignJWT({ roles: ["customer"] })
      .setProtectedHeader({ alg: "ES256", kid })
      .setSubject(SUBJECT)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
      .sign((keys.get(kid) as KeyPair).privateKey);

  beforeAll(async () => {
    await addKey("k1");
    jwksServer = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: published }));
    });
    await new Promise<void>((r) => jwksServer.listen(0, "127.0.0.1", r));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as { port: number }).port}/.well-known/jwks.json`;
    users = createService({
      name: "users",
      config: testRuntimeConfig({ identity: identity.config(undefined, ["users"]) }),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      routes(router) {
        router.service(UserService, {
          async getUser(req) {
            return { user: create(UserSchema, { id: req.id, email: "a@example.com" }) };
          },
        });
      },
    });
    ({ url: usersUrl } = await users.start());
  });
  afterAll(async () => {
    for (const g of gateways) await g.stop();
    await users?.shutdown();
    jwksServer?.close();
  });

  /** A gateway (as one process of several) whose JWKS cache uses `shared`. */
  const startGateway = async (shared: JwksSharedConfig) => {
    const gateway = createGateway({
      config: {
        host: "127.0.0.1",
        port: 0,
        adminHost: "127.0.0.1",
        adminPort: 0,
        logLevel: "silent",
        upstreams: parseUpstreams(`users=${usersUrl}`),
        identityKey: privateKeyFrom(identity.keys.gateway?.privateKey ?? ""),
        jwksUrl,
        jwksCooldownMs: COOLDOWN_MS,
        jwksMaxAgeMs: 60_000,
        jwksShared: shared,
        // Generous: the machine is loaded (a slow read would mean a fetch of its own, counted
        // below), and the outage test stops the server outright.
        jwksSharedTimeoutMs: 2_000,
        jwtIssuer: ISSUER,
        jwtAudience: AUDIENCE,
        jwtMaxLifetimeS: 3_600,
        rateLimits: [],
        authRateLimits: [],
        corsOrigins: [],
        maxRequestBytes: 1024 * 1024,
        retryMaxAttempts: 1,
        // A first call fetches the key set, fills the shared tier and goes upstream: CI (full
        // gateway suite, load ~20) saw it end DEADLINE_EXCEEDED (4) at 5 s.
        defaultTimeoutMs: 20_000,
        maxTimeoutMs: 20_000,
        shutdownGraceMs: 1_000,
      },
      logger: createLogger({ service: "gateway", level: "silent" }),
    });
    gateways.push(gateway);
    const { url, adminUrl } = await gateway.start();
    const client = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    return {
      /** GetUser through this gateway with a token signed by `kid`: OK or the code's number. */
      async call(kid: string): Promise<"OK" | number> {
        try {
          await client.getUser({ id: SUBJECT }, { headers: { authorization: `Bearer ${await token(kid)}` } });
          return "OK";
        } catch (err) {
          return (err as { code: number }).code;
        }
      },
      /** `cache_requests_total{cache="jwks", tier, result}` on the gateway's metrics page. */
      async requests(tier: "l1" | "l2", result: "hit" | "miss"): Promise<number> {
        const text = await (await fetch(`${adminUrl}/stats/prometheus`)).text();
        const line = text
          .split("\n")
          .find(
            (l) =>
              l.startsWith("cache_requests_total{") &&
              l.includes('cache="jwks"') &&
              l.includes(`tier="${tier}"`) &&
              l.includes(`result="${result}"`),
          );
        return line ? Number(line.split(" ").at(-1)) : 0;
      },
    };
  };

  /** The key set's entry in a NATS KV bucket. */
  const kvReader = async (url: string, bucket: string) => {
    const nc = await connectNats(url, "jwks-test");
    return {
      async read(): Promise<Entry | undefined> {
        const kv = await new Kvm(nc).open(bucket).catch(() => undefined);
        const e = await kv?.get(`jwks.${jwksCacheKey(jwksUrl)}`).catch(() => null);
        return e && e.operation === "PUT" ? decodeEntry(e.value) : undefined;
      },
      async destroy() {
        await (await new Kvm(nc).open(bucket)).destroy().catch(() => {});
      },
      close: () => nc.close(),
    };
  };

  /**
   * Waits until the shared tier holds a key set newer than `after` (a gateway fills it behind its
   * answer); resolves its version.
   */
  const sharedHolds = async (read: () => Promise<Entry | undefined>, after = 0): Promise<number> => {
    let version = 0;
    await waitFor(
      async () => {
        const e = await read();
        version = e?.kind === "value" ? e.version : 0;
        return version > after;
      },
      { what: "the key set in the shared tier", timeoutMs: 10_000 },
    );
    return version;
  };

  /** Waits out the refresh cooldown counted from now (the key set was fetched before this). */
  const pastCooldown = async () => {
    const from = Date.now();
    await waitFor(() => Date.now() - from > COOLDOWN_MS + 50, {
      what: "the JWKS cooldown",
      timeoutMs: COOLDOWN_MS + 5_000,
    });
  };

  describe.each([
    ["NATS KV", "nats"],
    ["Redis", "redis"],
  ] as const)("shared tier on %s", (_name, kind) => {
    const namespace = `${uniqueName("jw").replace(/[^A-Za-z0-9_-]/g, "_")}.`;
    const shared: JwksSharedConfig =
      kind === "nats" ? { kind, natsUrl, namespace } : { kind, url: redisUrl, namespace };
    let read: () => Promise<Entry | undefined>;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      if (kind === "nats") {
        const kv = await kvReader(natsUrl, cacheBucket(namespace, "gateway"));
        read = kv.read;
        cleanup = async () => {
          await kv.destroy();
          await kv.close();
        };
      } else {
        const redis = new Redis(redisUrl);
        const prefix = `${namespace}meshwork:cache:gateway:`;
        read = async () => {
          const v = await redis.getBuffer(`${prefix}jwks.${jwksCacheKey(jwksUrl)}`);
          return v ? decodeEntry(new Uint8Array(v)) : undefined;
        };
        cleanup = async () => {
          const stale = await redis.keys(`${prefix}*`);
          if (stale.length > 0) await redis.del(...stale);
          redis.disconnect();
        };
      }
    });
    afterAll(async () => {
      await cleanup?.();
    });

    it("two gateways make one JWKS fetch between them, and an unknown kid refreshes it once for both", async () => {
      const a = await startGateway(shared);
      const b = await startGateway(shared);
      const before = fetches;
      expect(await a.call("k1")).toBe("OK");
      expect(fetches - before).toBe(1);
      const first = await sharedHolds(read);
      // The second gateway finds the key set in the shared tier: no request to the users service.
      expect(await b.call("k1")).toBe("OK");
      expect(fetches - before).toBe(1);
      expect(await b.requests("l2", "hit")).toBe(1);
      expect(await b.requests("l1", "miss")).toBe(1);

      // A rotation publishes a new key; a token signed with it names a kid neither gateway has.
      const k2 = `k2-${kind}`;
      await addKey(k2);
      await pastCooldown();
      expect(await a.call(k2)).toBe("OK");
      expect(fetches - before).toBe(2);
      // The second gateway refreshes too, and reads the first one's fresh key set from the shared
      // tier instead of fetching it again.
      await sharedHolds(read, first);
      expect(await b.call(k2)).toBe("OK");
      expect(fetches - before).toBe(2);
      // The old key still verifies (both are published), from each process's own tier.
      expect(await a.call("k1")).toBe("OK");
      expect(await b.call("k1")).toBe("OK");
      expect(fetches - before).toBe(2);
    });
  });

  it("an unknown kid within the cooldown is refused without a fetch; after it, the key set is fetched again", async () => {
    const g = await startGateway({ kind: "none" });
    const before = fetches;
    expect(await g.call("k1")).toBe("OK");
    expect(fetches - before).toBe(1);
    await addKey("k3");
    // Within the cooldown of that fetch: refused (UNAUTHENTICATED), nothing fetched.
    expect(await g.call("k3")).toBe(16);
    expect(fetches - before).toBe(1);
    await pastCooldown();
    expect(await g.call("k3")).toBe("OK");
    expect(fetches - before).toBe(2);
  });

  describe("shared tier down", () => {
    let nats: TestNatsServer;
    beforeAll(async () => {
      nats = await startNatsServer();
    });
    afterAll(async () => {
      await nats?.remove();
    });

    it("verifies by fetching the key set directly, and uses the shared tier again when it returns", async () => {
      const shared: JwksSharedConfig = { kind: "nats", natsUrl: nats.url, namespace: "" };
      const a = await startGateway(shared);
      const before = fetches;
      expect(await a.call("k1")).toBe("OK");
      expect(fetches - before).toBe(1);
      const kv = await kvReader(nats.url, cacheBucket("", "gateway"));
      await sharedHolds(kv.read);
      await kv.close();
      await nats.stop();
      // A new gateway while NATS is away: its read of the shared tier fails within the deadline
      // and it fetches the key set itself; the call succeeds.
      const b = await startGateway(shared);
      expect(await b.call("k1")).toBe("OK");
      expect(fetches - before).toBe(2);
      await nats.start();
      // Back (the entry the first gateway stored is still there): a third gateway is served by
      // the shared tier again.
      await waitFor(async () => (await a.call("k1")) === "OK" && (await b.call("k1")) === "OK", {
        what: "calls after the outage",
      });
      const c = await startGateway(shared);
      await waitFor(async () => (await c.call("k1")) === "OK", {
        what: "a third gateway",
        timeoutMs: 15_000,
      });
      expect(await c.requests("l2", "hit")).toBe(1);
    });
  });
});
