import { getEventListeners } from "node:events";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@meshwork/contracts/grpc/health/v1/health";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { connectNats } from "@meshwork/events";
import { createService, type Service, ServingStatus } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { uniqueName, waitFor } from "@meshwork/testing";
import { afterAll, describe, expect, it } from "vitest";
import type { DiscoveryConfig } from "./config.js";
import { createDiscovery, type Discovery } from "./discovery.js";
import { removeRegistry, watchRegistry } from "./registry.js";

const ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

describe("discovery end to end: announce, watch health, balance (real NATS, real HTTP/2)", () => {
  const config: DiscoveryConfig = {
    natsUrl: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
    mode: "registry",
    bucket: uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_"),
    ttlMs: 3_000,
    advertiseHost: undefined,
    upstreams: {},
  };
  const services: Service[] = [];
  const discoveries: Discovery[] = [];
  afterAll(async () => {
    for (const s of services) await s.shutdown();
    for (const d of discoveries) await d.close();
    const nc = await connectNats(config.natsUrl, "cleanup");
    await removeRegistry(nc, config.bucket);
    await nc.close();
  });

  /** A users-shaped instance that answers with its own name, announced in the registry. */
  const startInstance = async (name: string) => {
    const discovery = createDiscovery(config, { service: "users", version: "1.2.3" });
    discoveries.push(discovery);
    const service = createService({
      name,
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      announce: (where) => discovery.announce(where),
      routes(router) {
        router.service(UserService, {
          getUser: async (req) => ({ user: { id: req.id, displayName: name } }),
        });
      },
    });
    services.push(service);
    const { port } = await service.start();
    return { service, port };
  };

  it("announces the package's version with the build's commit as semver build metadata", async () => {
    const discovery = createDiscovery(config, { service: "versioned", version: "1.2.3", commit: "abc1234" });
    discoveries.push(discovery);
    const withdraw = await discovery.announce({ host: "127.0.0.1", port: 1 });
    const nc = await connectNats(config.natsUrl, "version-check");
    try {
      const watcher = await watchRegistry({ nc, bucket: config.bucket });
      await watcher.ready;
      expect(watcher.all().find((r) => r.service === "versioned")?.version).toBe("1.2.3+abc1234");
      await watcher.stop();
    } finally {
      await withdraw();
      await nc.close();
    }
  });

  it("spreads calls over the SERVING instances, skips one that reports NOT_SERVING, and drops one that shuts down at once", async () => {
    const a = await startInstance("a");
    const b = await startInstance("b");
    const caller = createDiscovery(config, { service: "caller" });
    discoveries.push(caller);
    const endpoints = await caller.endpoints();
    await waitFor(() => endpoints.healthy("users").length === 2, { what: "both instances healthy" });
    expect(
      endpoints
        .all("users")
        .map((e) => e.url)
        .sort(),
    ).toEqual([`http://127.0.0.1:${a.port}`, `http://127.0.0.1:${b.port}`].sort());
    const client = createClient(UserService, await caller.transport("users"));
    const tally = async (n: number) => {
      const seen: Record<string, number> = {};
      await Promise.all(
        Array.from({ length: n }, async () => {
          const { user } = await client.getUser({ id: ID });
          const who = user?.displayName ?? "?";
          seen[who] = (seen[who] ?? 0) + 1;
        }),
      );
      return seen;
    };
    const spread = await tally(200);
    expect(Object.keys(spread).sort()).toEqual(["a", "b"]);
    expect(Math.min(spread.a ?? 0, spread.b ?? 0)).toBeGreaterThan(40);

    // b says it is not ready (a failed readiness check): pushed over the Watch stream, no call reaches it.
    b.service.health.setAll(ServingStatus.NOT_SERVING);
    await waitFor(() => endpoints.healthy("users").length === 1, { what: "b leaving the healthy set" });
    expect(await tally(50)).toEqual({ a: 50 });
    b.service.health.setAll(ServingStatus.SERVING);
    await waitFor(() => endpoints.healthy("users").length === 2, { what: "b back" });

    // a shuts down gracefully: deregistered at once (long before the TTL), calls keep succeeding.
    const t0 = Date.now();
    await a.service.shutdown();
    await waitFor(() => endpoints.all("users").length === 1, { what: "a deregistered" });
    expect(Date.now() - t0).toBeLessThan(config.ttlMs);
    expect(await tally(20)).toEqual({ b: 20 });

    // Nothing healthy: UNAVAILABLE naming the service, at once.
    await b.service.shutdown();
    await waitFor(() => endpoints.all("users").length === 0, { what: "b deregistered" });
    await expect(client.getUser({ id: ID })).rejects.toMatchObject({
      code: 14,
      rawMessage: "no healthy endpoint of users",
    });
  });

  it("leaves a finished call's signal unaborted and unlinked from the caller's; a caller's abort still cancels", async () => {
    await startInstance("s");
    const caller = createDiscovery(config, { service: "caller" });
    discoveries.push(caller);
    const endpoints = await caller.endpoints();
    await waitFor(() => endpoints.healthy("users").length >= 1, { what: "the instance healthy" });
    const signals: AbortSignal[] = [];
    const capture: Interceptor = (next) => (req) => {
      signals.push(req.signal);
      return next(req);
    };
    const client = createClient(UserService, await caller.transport("users", { interceptors: [capture] }));
    const callerAbort = new AbortController();
    const { user } = await client.getUser({ id: ID }, { signal: callerAbort.signal, timeoutMs: 5_000 });
    expect(user?.id).toBe(ID);
    // Aborting it on success built a DOMException per call (issue 24): nothing listens any more.
    expect(signals[0]?.aborted).toBe(false);
    expect(getEventListeners(callerAbort.signal, "abort")).toHaveLength(0);
    callerAbort.abort();
    await expect(client.getUser({ id: ID }, { signal: callerAbort.signal })).rejects.toMatchObject({
      code: Code.Canceled,
    });
  });

  it("keeps static endpoints from UPSTREAMS beside the registry, health-checked the same way", async () => {
    const s = await startInstance("static-one");
    const caller = createDiscovery(
      { ...config, mode: "static", upstreams: { users: [`http://127.0.0.1:${s.port}`] } },
      { service: "caller" },
    );
    discoveries.push(caller);
    const endpoints = await caller.endpoints();
    await waitFor(() => endpoints.healthy("users").length === 1, { what: "the static endpoint healthy" });
    expect(endpoints.all("users")[0]).toMatchObject({ source: "static", health: "SERVING" });
    const transport = await caller.transport("users");
    const client = createClient(UserService, transport);
    expect((await client.getUser({ id: ID })).user?.displayName).toBe("static-one");
    // A server stream through the same transport, counted in flight until it is read to the end.
    const ac = new AbortController();
    const watch = createClient(Health, transport).watch({ service: "" }, { signal: ac.signal });
    const first = await watch[Symbol.asyncIterator]().next();
    expect(first.value?.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(Object.values(transport.inFlight())).toEqual([1]);
    // Abandoned (cancelled, never read again): no longer counted against that endpoint.
    ac.abort();
    await waitFor(() => Object.values(transport.inFlight())[0] === 0, {
      what: "the stream to leave the count",
    });
  });
});
