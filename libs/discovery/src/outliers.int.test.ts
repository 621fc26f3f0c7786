import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { createUpstreamPolicy } from "@meshwork/resilience";
import { createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { captureLogs, waitFor } from "@meshwork/testing";
import { afterAll, describe, expect, it } from "vitest";
import { createDiscovery, type Discovery } from "./discovery.js";

const ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

describe("outlier ejection between services (real HTTP/2, health-checked static endpoints)", () => {
  const services: Service[] = [];
  const discoveries: Discovery[] = [];
  afterAll(async () => {
    for (const d of discoveries) await d.close();
    for (const s of services) await s.shutdown();
  });

  /** A users-shaped instance that stays SERVING and answers as `mode` says; it counts its calls. */
  const startInstance = async (name: string, mode: "ok" | "unavailable" | "not-found") => {
    const state = { mode, calls: 0 };
    const service = createService({
      name,
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      routes(router) {
        router.service(UserService, {
          getUser: async (req) => {
            state.calls++;
            if (state.mode === "unavailable")
              throw new ConnectError("database unreachable", Code.Unavailable);
            if (state.mode === "not-found") throw new ConnectError("no such user", Code.NotFound);
            return { user: { id: req.id, displayName: name } };
          },
        });
      },
    });
    services.push(service);
    const { url } = await service.start();
    return { url, state };
  };

  const callerOf = async (urls: string[]) => {
    const logs = captureLogs();
    const discovery = createDiscovery(
      {
        natsUrl: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
        mode: "static",
        bucket: "unused",
        ttlMs: 3_000,
        advertiseHost: undefined,
        upstreams: { users: urls },
      },
      { service: "caller" },
      { logger: createLogger({ service: "caller", destination: logs.destination }) },
    );
    discoveries.push(discovery);
    const endpoints = await discovery.endpoints();
    await waitFor(() => endpoints.healthy("users").length === urls.length, {
      what: "every instance SERVING",
    });
    return { discovery, logs };
  };

  it("takes a bad but SERVING instance out of the choice while the caller's breaker stays closed", async () => {
    const good = await startInstance("good", "ok");
    const bad = await startInstance("bad", "unavailable");
    const { discovery, logs } = await callerOf([good.url, bad.url]);
    // The orders -> inventory shape: retries around a breaker that counts every attempt.
    const policy = createUpstreamPolicy({
      upstream: "users",
      defaultTimeoutMs: 5_000,
      retry: { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5 },
      breaker: { consecutiveFailures: 4, halfOpenAfterMs: 60_000 },
      bulkhead: { limit: 64, queue: 64 },
      logger: createLogger({ service: "caller", level: "silent" }),
      meter: createTelemetry({ serviceName: "caller" }).meter,
    });
    const transport = await discovery.transport("users", {
      interceptors: [policy.interceptor],
      outliers: {
        consecutiveFailures: 2,
        baseEjectionMs: 60_000,
        maxEjectionMs: 60_000,
        maxEjectedPercent: 50,
      },
    });
    const client = createClient(UserService, transport);
    // One call at a time: without ejection about half the attempts reach `bad`, and four failed
    // attempts in a row (which open the breaker) come within a few dozen calls.
    for (let i = 0; i < 200; i++) {
      const { user } = await client.getUser({ id: ID });
      expect(user?.displayName).toBe("good");
    }
    expect(policy.breakerState).toBe("closed");
    expect(bad.state.calls).toBe(2); // its two failures in a row, then out of the choice
    expect(good.state.calls).toBe(200);
    expect(transport.outliers()[bad.url]).toMatchObject({ ejected: true, ejections: 1 });
    expect(transport.outliers()[good.url]).toMatchObject({ ejected: false, ejections: 0 });
    const ejections = logs.lines.filter((l) => l.msg === "endpoint ejected after consecutive failures");
    expect(ejections).toEqual([
      expect.objectContaining({ level: "warn", upstream: "users", endpoint: bad.url, ejection_ms: 60_000 }),
    ]);
  });

  it("tries an ejected instance again when its time is over, and ejects it for twice as long if it still fails", async () => {
    const good = await startInstance("good2", "ok");
    const bad = await startInstance("bad2", "unavailable");
    const { discovery } = await callerOf([good.url, bad.url]);
    const transport = await discovery.transport("users", {
      outliers: { consecutiveFailures: 1, baseEjectionMs: 300, maxEjectionMs: 10_000, maxEjectedPercent: 50 },
    });
    const client = createClient(UserService, transport);
    const callUntilEjected = async () => {
      for (let i = 0; i < 200 && !transport.outliers()[bad.url]?.ejected; i++) {
        await client.getUser({ id: ID }).catch(() => undefined); // no retries here: bad's answer fails
      }
      return transport.outliers()[bad.url];
    };
    expect(await callUntilEjected()).toMatchObject({ ejected: true, ejections: 1 });
    await waitFor(() => transport.outliers()[bad.url]?.ejected === false, {
      what: "the first ejection over",
    });
    const before = bad.state.calls;
    const second = await callUntilEjected();
    expect(bad.state.calls).toBe(before + 1); // tried once more
    expect(second).toMatchObject({ ejected: true, ejections: 2 });
    expect(second?.ejectedForMs).toBeGreaterThan(300); // 600 ms this time
    // Back to health: once in again, it serves and stays in.
    bad.state.mode = "ok";
    await waitFor(() => transport.outliers()[bad.url]?.ejected === false, {
      what: "the second ejection over",
    });
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add((await client.getUser({ id: ID })).user?.displayName ?? "?");
    expect(seen).toEqual(new Set(["good2", "bad2"]));
    expect(transport.outliers()[bad.url]?.ejected).toBe(false);
  });

  it("never ejects more than its share: of two failing instances one stays in the choice", async () => {
    const a = await startInstance("a", "unavailable");
    const b = await startInstance("b", "unavailable");
    const { discovery } = await callerOf([a.url, b.url]);
    const transport = await discovery.transport("users", {
      outliers: {
        consecutiveFailures: 1,
        baseEjectionMs: 60_000,
        maxEjectionMs: 60_000,
        maxEjectedPercent: 50,
      },
    });
    const client = createClient(UserService, transport);
    for (let i = 0; i < 30; i++) {
      await expect(client.getUser({ id: ID })).rejects.toMatchObject({ code: Code.Unavailable });
    }
    const state = transport.outliers();
    expect(Object.values(state).filter((s) => s.ejected)).toHaveLength(1);
    expect(a.state.calls + b.state.calls).toBe(30);
    expect(Math.min(a.state.calls, b.state.calls)).toBe(1); // the ejected one failed once
  });

  it("does not count answers about the request (NOT_FOUND) against the instance", async () => {
    const a = await startInstance("nf", "not-found");
    const { discovery } = await callerOf([a.url]);
    const transport = await discovery.transport("users", {
      outliers: {
        consecutiveFailures: 1,
        baseEjectionMs: 60_000,
        maxEjectionMs: 60_000,
        maxEjectedPercent: 100,
      },
    });
    const client = createClient(UserService, transport);
    for (let i = 0; i < 10; i++) {
      await expect(client.getUser({ id: ID })).rejects.toMatchObject({ code: Code.NotFound });
    }
    expect(transport.outliers()[a.url]).toMatchObject({ ejected: false, ejections: 0 });
  });
});
