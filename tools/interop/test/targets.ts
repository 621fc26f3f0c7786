import type { Policy } from "@meshwork/gateway";
import { createGateway, type Gateway, parseUpstreams } from "@meshwork/gateway/embedded";
import type { Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createInteropService } from "../src/fixture.js";
import { file_grpc_testing_test } from "../src/gen/grpc/testing/test_pb.js";

/** Where the interop cases run: the fixture itself, and the gateway in front of it. */
export interface Targets {
  /** `host:port` of the fixture. */
  direct: string;
  /** `host:port` of the gateway routing grpc.testing.TestService to the fixture. */
  gateway: string;
  gatewayUrl: string;
  stop(): Promise<void>;
}

/** Every method of the grpc.testing services is public at the edge (the suite carries no token). */
const openPolicies = new Map<string, Policy>(
  file_grpc_testing_test.services.flatMap((s) =>
    s.methods.map((m) => [`/${s.typeName}/${m.name}`, { kind: "public" }] as [string, Policy]),
  ),
);

/**
 * Starts the TestService fixture on the runtime and a gateway whose route table is the grpc.testing
 * contract, with the `grpc.testing` cluster a static upstream at the fixture. Messages of the
 * large cases are ~300 KB: both read limits allow 1 MiB.
 */
export async function startTargets(): Promise<Targets> {
  const service: Service = createInteropService(testRuntimeConfig({ readMaxBytes: 1024 * 1024 }));
  const direct = await service.start();
  let gateway: Gateway | undefined;
  try {
    gateway = createGateway({
      files: [file_grpc_testing_test],
      policies: openPolicies,
      config: {
        host: "127.0.0.1",
        port: 0,
        adminHost: "127.0.0.1",
        adminPort: 0,
        logLevel: "silent",
        upstreams: parseUpstreams(`grpc.testing=${direct.url}`),
        jwksUrl: "http://127.0.0.1:1/unused",
        jwksCooldownMs: 5_000,
        jwtIssuer: "meshwork-users",
        jwtAudience: "meshwork",
        rateLimits: [],
        corsOrigins: [],
        maxRequestBytes: 1024 * 1024,
        retryMaxAttempts: 3,
        defaultTimeoutMs: 10_000,
        maxTimeoutMs: 20_000,
        shutdownGraceMs: 1_000,
      },
    });
    const edge = await gateway.start();
    const g = gateway;
    return {
      direct: `127.0.0.1:${direct.port}`,
      gateway: `127.0.0.1:${edge.port}`,
      gatewayUrl: edge.url,
      async stop() {
        await g.stop();
        await service.shutdown();
      },
    };
  } catch (err) {
    await gateway?.stop().catch(() => {});
    await service.shutdown();
    throw err;
  }
}
