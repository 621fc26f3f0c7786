import { createServer } from "node:http";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { captureLogs, waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUpstreamPolicy, type UpstreamPolicy, type UpstreamPolicyOptions } from "./policy.js";

const A = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const PRECONDITION = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a12";
const BAD_ARGUMENT = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a13";
const FORWARD = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a14";

/** A users-shaped upstream whose behaviour the test switches; it counts what reaches it. */
async function startUpstream(onGetUser?: (id: string, h: Headers) => Promise<unknown> | undefined) {
  const state = {
    mode: "ok" as "ok" | "unavailable" | "busy-once",
    calls: 0,
    registers: 0,
    timeouts: [] as string[],
    connectTimeouts: [] as string[],
  };
  const service: Service = createService({
    name: "upstream",
    config: testRuntimeConfig(),
    files: [file_meshwork_users_v1_users],
    services: [UserService],
    routes(router) {
      router.service(UserService, {
        async getUser(req, ctx) {
          state.calls++;
          state.timeouts.push(ctx.requestHeader.get("grpc-timeout") ?? "");
          state.connectTimeouts.push(ctx.requestHeader.get("connect-timeout-ms") ?? "");
          const forwarded = await onGetUser?.(req.id, ctx.requestHeader);
          if (forwarded) return forwarded as never;
          if (req.id === PRECONDITION) throw new ConnectError("not now", Code.FailedPrecondition);
          if (req.id === BAD_ARGUMENT) throw new ConnectError("bad", Code.InvalidArgument);
          if (state.mode === "unavailable") throw new ConnectError("down", Code.Unavailable);
          if (state.mode === "busy-once") {
            state.mode = "ok";
            throw new ConnectError("slow down", Code.ResourceExhausted, { "retry-after": "1" });
          }
          return { user: { id: req.id } };
        },
        async registerUser() {
          state.registers++;
          throw new ConnectError("down", Code.Unavailable);
        },
        async login() {
          throw new ConnectError("no", Code.Unauthenticated);
        },
        async listUsers() {
          return {};
        },
      });
    },
  });
  const { url } = await service.start();
  return { service, url, state };
}

function options(overrides: Partial<UpstreamPolicyOptions> = {}): UpstreamPolicyOptions {
  const telemetry = createTelemetry({ serviceName: "caller" });
  return {
    upstream: "users",
    defaultTimeoutMs: 5_000,
    retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 50 },
    breaker: { consecutiveFailures: 1_000, halfOpenAfterMs: 300 },
    bulkhead: { limit: 64, queue: 64 },
    logger: createLogger({ service: "caller", level: "silent" }),
    meter: telemetry.meter,
    ...overrides,
  };
}

/** A UserService client to `baseUrl` with `policy` on every call. */
const through = (baseUrl: string, policy: UpstreamPolicy) =>
  createClient(UserService, createGrpcTransport({ baseUrl, interceptors: [policy.interceptor] }));

const code = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (e: unknown) => Code[ConnectError.from(e).code] as string,
  );

describe("resilience policies on real calls", () => {
  let up: Awaited<ReturnType<typeof startUpstream>>;
  beforeAll(async () => {
    up = await startUpstream();
  });
  afterAll(async () => {
    await up?.service.shutdown();
  });

  it("retries an idempotent call on UNAVAILABLE up to the configured attempts, and no further", async () => {
    const policy = createUpstreamPolicy(options());
    const users = through(up.url, policy);
    up.state.mode = "unavailable";
    up.state.calls = 0;
    expect(await code(users.getUser({ id: A }))).toBe("Unavailable");
    expect(up.state.calls).toBe(3);
    up.state.mode = "ok";
    up.state.calls = 0;
    expect(await code(users.getUser({ id: A }))).toBe("OK");
    expect(up.state.calls).toBe(1);
  });

  it("never retries a method the proto does not mark idempotent, nor INVALID_ARGUMENT or FAILED_PRECONDITION", async () => {
    const policy = createUpstreamPolicy(options());
    const users = through(up.url, policy);
    up.state.registers = 0;
    expect(
      await code(users.registerUser({ email: "a@example.com", password: "long enough", displayName: "A" })),
    ).toBe("Unavailable");
    expect(up.state.registers).toBe(1);
    for (const [id, want] of [
      [PRECONDITION, "FailedPrecondition"],
      [BAD_ARGUMENT, "InvalidArgument"],
    ] as const) {
      up.state.calls = 0;
      expect(await code(users.getUser({ id }))).toBe(want);
      expect(up.state.calls).toBe(1);
    }
  });

  it("honours retry-after on RESOURCE_EXHAUSTED before the retry", async () => {
    const policy = createUpstreamPolicy(options());
    const users = through(up.url, policy);
    up.state.mode = "busy-once";
    up.state.calls = 0;
    const began = Date.now();
    expect(await code(users.getUser({ id: A }))).toBe("OK");
    expect(up.state.calls).toBe(2);
    expect(Date.now() - began).toBeGreaterThanOrEqual(950);
  });

  it("opens the breaker after the threshold, fails fast without a network call, half-opens and closes; logged and exported", async () => {
    const { lines, destination } = captureLogs();
    const telemetry = createTelemetry({ serviceName: "caller" });
    const metrics = createServer((req, res) => telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => metrics.listen(0, "127.0.0.1", r));
    const scrape = async () =>
      (await fetch(`http://127.0.0.1:${(metrics.address() as { port: number }).port}/metrics`)).text();
    try {
      const policy = createUpstreamPolicy(
        options({
          retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 },
          breaker: { consecutiveFailures: 3, halfOpenAfterMs: 300 },
          logger: createLogger({ service: "caller", destination }),
          meter: telemetry.meter,
        }),
      );
      const users = through(up.url, policy);
      up.state.mode = "unavailable";
      up.state.calls = 0;
      // Two calls of two attempts: the third failure (the second call's first attempt) opens it,
      // so that call's retry is refused by the breaker without reaching the upstream.
      expect(await code(users.getUser({ id: A }))).toBe("Unavailable");
      expect(await code(users.getUser({ id: A }))).toBe("Unavailable");
      expect(policy.breakerState).toBe("open");
      expect(up.state.calls).toBe(3);
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const err = await users.getUser({ id: A }).catch((e: unknown) => ConnectError.from(e));
        times.push(performance.now() - t0);
        expect(err).toMatchObject({ code: Code.Unavailable });
        expect((err as ConnectError).rawMessage).toContain("circuit breaker open");
      }
      times.sort((x, y) => x - y);
      expect(times[2]).toBeLessThan(5); // the median of five: fail fast
      expect(up.state.calls).toBe(3); // no network call while open
      const open = await scrape();
      expect(open).toMatch(/resilience_breaker_state\{[^}]*upstream="users"[^}]*\} 1/);
      expect(open).toMatch(/resilience_rejections_total\{[^}]*reason="breaker_open"[^}]*\} 6/);
      expect(open).toMatch(/resilience_retries_total\{[^}]*upstream="users"[^}]*\} 2/);
      expect(lines).toContainEqual(
        expect.objectContaining({ msg: "circuit breaker state changed", state: "open", upstream: "users" }),
      );
      up.state.mode = "ok";
      await waitFor(async () => (await code(users.getUser({ id: A }))) === "OK", {
        what: "the half-open probe to succeed",
      });
      expect(policy.breakerState).toBe("closed");
      expect(lines.map((l) => l.state).filter(Boolean)).toEqual(["open", "half-open", "closed"]);
      expect(await scrape()).toMatch(/resilience_breaker_state\{[^}]*upstream="users"[^}]*\} 0/);
    } finally {
      metrics.close();
    }
  });

  it("gives the callee no more than what is left of the caller's own deadline", async () => {
    // Service B is `up`; service A serves GetUser by calling B through the policy, which has a
    // 5 s default: B must see no more than what is left of A's incoming 2 s (2 s, not less: a
    // first call opens connections, which on a loaded CI machine took more than 300 ms).
    const policy = createUpstreamPolicy(options());
    const b = through(up.url, policy);
    const a = await startUpstream(async (id) => (id === FORWARD ? b.getUser({ id: A }) : undefined));
    try {
      up.state.timeouts = [];
      const users = createClient(UserService, createGrpcTransport({ baseUrl: a.url }));
      expect((await users.getUser({ id: FORWARD }, { timeoutMs: 2_000 })).user?.id).toBe(A);
      const seen = Number(/^(\d+)m$/.exec(up.state.timeouts[0] ?? "")?.[1]);
      expect(seen).toBeGreaterThan(0);
      expect(seen).toBeLessThanOrEqual(2_000);
      // Without an incoming deadline, the policy's default applies.
      up.state.timeouts = [];
      await b.getUser({ id: A });
      expect(Number(/^(\d+)m$/.exec(up.state.timeouts[0] ?? "")?.[1])).toBeGreaterThan(4_000);
      // Over the Connect protocol the deadline goes in Connect's own header.
      up.state.timeouts = [];
      up.state.connectTimeouts = [];
      const overConnect = createClient(
        UserService,
        createConnectTransport({ baseUrl: up.url, httpVersion: "2", interceptors: [policy.interceptor] }),
      );
      await overConnect.getUser({ id: A });
      expect(up.state.timeouts).toEqual([""]);
      expect(Number(up.state.connectTimeouts[0])).toBeGreaterThan(4_000);
    } finally {
      await a.service.shutdown();
    }
  });

  it("refuses calls beyond the bulkhead at once with RESOURCE_EXHAUSTED", async () => {
    const slow = await startUpstream(
      async () => new Promise((r) => setTimeout(() => r({ user: { id: A } }), 1_000)),
    );
    try {
      const policy = createUpstreamPolicy(options({ bulkhead: { limit: 2, queue: 1 } }));
      const users = through(slow.url, policy);
      const results = await Promise.all(Array.from({ length: 5 }, () => code(users.getUser({ id: A }))));
      expect(results.filter((r) => r === "OK")).toHaveLength(3);
      expect(results.filter((r) => r === "ResourceExhausted")).toHaveLength(2);
      // A call with no timeout of its own gets the policy's default, enforced on this side too.
      const short = createUpstreamPolicy(options({ defaultTimeoutMs: 100 }));
      const hurried = through(slow.url, short);
      const began = Date.now();
      expect(await code(hurried.getUser({ id: A }))).toBe("DeadlineExceeded");
      // Well before the upstream's answer at 1 s: the 100 ms default ended it.
      expect(Date.now() - began).toBeLessThan(900);
    } finally {
      await slow.service.shutdown();
    }
  });
});
