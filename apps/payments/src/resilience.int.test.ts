import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { createDiscovery, type Discovery, removeRegistry } from "@meshwork/discovery";
import { connectNats, streamName } from "@meshwork/events";
import { createUpstreamPolicy } from "@meshwork/resilience";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
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

const main = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

describe("a caller's breaker in front of a failing payments process (real process, registry, HTTP/2)", () => {
  const namespace = `${uniqueName("t")}.`;
  const bucket = uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_");
  let db: TestDatabase;
  let payments: ManagedProcess;
  let direct: ReturnType<typeof createClient<typeof PaymentService>>;
  let discovery: Discovery;

  beforeAll(async () => {
    db = await createTestDatabase("mw_paybrk");
    payments = startProcess(process.execPath, [main], {
      env: {
        PORT: "0",
        DATABASE_URL: db.url,
        NATS_URL: natsUrl,
        EVENTS_NAMESPACE: namespace,
        DISCOVERY_BUCKET: bucket,
        DISCOVERY_TTL_MS: "2000",
        PAYMENTS_HARD_DOWN: "true", // forced to fail from the start
      },
    });
    const port = (await payments.waitForLog((l) => l.msg === "listening")).port as number;
    await payments.waitForLog((l) => l.msg === "announced");
    direct = createClient(PaymentService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    discovery = createDiscovery(
      { natsUrl, mode: "registry", bucket, ttlMs: 2_000, advertiseHost: undefined, upstreams: {} },
      { service: "orders" },
    );
  });
  afterAll(async () => {
    await discovery?.close();
    await payments?.stop();
    const nc = await connectNats(natsUrl, "cleanup");
    await (await jetstreamManager(nc)).streams.delete(streamName(namespace, "PAYMENTS")).catch(() => {});
    await removeRegistry(nc, bucket);
    await nc.close();
    await db?.drop();
  });

  it("opens after the threshold, fails fast without reaching payments, half-opens after the cool-down and closes once payments is healthy", async () => {
    const logs: Array<Record<string, unknown>> = [];
    const logger = createLogger({
      service: "orders",
      level: "info",
      destination: { write: (line: string) => logs.push(JSON.parse(line)) },
    });
    const halfOpenAfterMs = 1_000;
    const policy = createUpstreamPolicy({
      upstream: "payments",
      defaultTimeoutMs: 2_000,
      retry: { maxAttempts: 1, initialDelayMs: 10, maxDelayMs: 10 },
      breaker: { consecutiveFailures: 3, halfOpenAfterMs },
      bulkhead: { limit: 32, queue: 32 },
      logger,
      meter: createTelemetry({ serviceName: "orders" }).meter,
    });
    const endpoints = await discovery.endpoints();
    await waitFor(() => endpoints.healthy("payments").length === 1, {
      what: "payments SERVING in the registry",
    });
    const client = createClient(
      PaymentService,
      await discovery.transport("payments", { interceptors: [policy.interceptor] }),
    );
    const reached = () =>
      payments
        .logs()
        .filter(
          (l) => l.msg === "rpc" && l.method === "/meshwork.payments.v1.PaymentService/AuthorizePayment",
        ).length;
    const authorize = () =>
      client
        .authorizePayment({
          paymentId: randomUUID(),
          userId: randomUUID(),
          amount: { amountMinor: 100n, currency: "EUR" },
        })
        .then(
          () => "OK",
          (e: unknown) => ConnectError.from(e),
        );

    // Three failures in a row (the provider is down): each reached payments; the breaker opens.
    for (let i = 0; i < 3; i++) {
      const e = await authorize();
      expect(e).toMatchObject({
        code: Code.Unavailable,
        rawMessage: "payment provider unavailable during authorize: the provider is down",
      });
    }
    expect(policy.breakerState).toBe("open");
    const openedAt = Date.now();
    await waitFor(() => reached() === 3, { what: "the three calls in payments' log" });

    // Open: refused at once, without a network call.
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const e = await authorize();
      times.push(performance.now() - t0);
      expect(e).toMatchObject({ code: Code.Unavailable, rawMessage: "circuit breaker open for payments" });
    }
    times.sort((a, b) => a - b);
    expect(times[10]).toBeLessThan(5); // the median; a GC pause may stretch one
    expect(times[19]).toBeLessThan(50);

    // Payments recovers; after the cool-down one probe goes through and closes the breaker.
    await direct.setFaults({
      faults: { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 0n },
    });
    const outcome = await waitFor(
      async () => {
        const r = await authorize();
        return r === "OK" ? r : undefined;
      },
      { what: "a probe after the cool-down", intervalMs: 50 },
    );
    expect(outcome).toBe("OK");
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(halfOpenAfterMs);
    expect(policy.breakerState).toBe("closed");
    expect(await authorize()).toBe("OK");
    // Payments saw the three failures, the probe and the last call: nothing while open.
    await waitFor(() => reached() >= 5, { what: "the probe and the last call in payments' log" });
    expect(reached()).toBe(5);
    expect(logs.filter((l) => l.msg === "circuit breaker state changed").map((l) => l.state)).toEqual([
      "open",
      "half-open",
      "closed",
    ]);
  });
});
