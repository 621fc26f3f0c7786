import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as HS } from "@meshwork/contracts/grpc/health/v1/health";
import { createLogger } from "@meshwork/telemetry";
import { captureLogs, waitFor } from "@meshwork/testing";
import { afterAll, describe, expect, it } from "vitest";
import { parseEnv, runtimeEnvShape, toRuntimeConfig } from "./config.js";
import { createService, type Service } from "./service.js";
import { testRuntimeConfig } from "./testing.js";

describe("readiness checks have a deadline", () => {
  let service: Service | undefined;
  afterAll(async () => {
    await service?.shutdown();
  });

  it("READINESS_TIMEOUT_MS is read from the environment, 5 s by default, and refuses nonsense", () => {
    const shape = runtimeEnvShape({ port: 1 });
    expect(toRuntimeConfig(parseEnv(shape, {})).readinessTimeoutMs).toBe(5_000);
    expect(toRuntimeConfig(parseEnv(shape, { READINESS_TIMEOUT_MS: "250" })).readinessTimeoutMs).toBe(250);
    expect(() => parseEnv(shape, { READINESS_TIMEOUT_MS: "-1" })).toThrow(/READINESS_TIMEOUT_MS/);
  });

  it("a check that stops answering turns the service NOT_SERVING, never calls it again while it hangs, and SERVING again once it answers", async () => {
    let hang = false;
    let started = 0;
    const { lines, destination } = captureLogs();
    service = createService({
      name: "probe",
      config: testRuntimeConfig({ healthCheckIntervalMs: 50, readinessTimeoutMs: 400, logLevel: "info" }),
      logger: createLogger({ service: "probe", destination }),
      files: [],
      services: [],
      routes: () => {},
      readiness: [
        {
          name: "database",
          check: () => {
            started++;
            if (!hang) return Promise.resolve();
            // Never settles while it hangs (a socket that died without a reset).
            return new Promise<void>((resolve) => {
              const poll = setInterval(() => {
                if (hang) return;
                clearInterval(poll);
                resolve();
              }, 20);
            });
          },
        },
      ],
    });
    const { url } = await service.start();
    const health = createClient(Health, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    expect((await health.check({ service: "" })).status).toBe(HS.SERVING);

    hang = true;
    const hungAt = Date.now();
    await waitFor(async () => (await health.check({ service: "" })).status === HS.NOT_SERVING, {
      timeoutMs: 10_000,
    });
    // Not before the deadline: a slow check is not a failed one.
    expect(Date.now() - hungAt).toBeGreaterThanOrEqual(400);
    const failed = lines.find((l) => l.msg === "readiness check failed");
    expect(failed).toMatchObject({ check: "database", err: "Error: did not answer within 400 ms" });
    // Ticks every 50 ms and a round gives up after 400 ms, but the hung call is waited for again,
    // never called a second time beside it: a pool's pings would pile up on a dead socket.
    const startedWhileHung = started;
    await waitFor(() => lines.filter((l) => l.msg === "readiness check failed").length >= 3, {
      timeoutMs: 10_000,
    });
    expect(started).toBe(startedWhileHung);

    hang = false;
    await waitFor(async () => (await health.check({ service: "" })).status === HS.SERVING, {
      timeoutMs: 10_000,
    });
  });
});
