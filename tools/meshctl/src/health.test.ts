import { once } from "node:events";
import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@meshwork/contracts/grpc/health/v1/health";
import { afterEach, describe, expect, it } from "vitest";
import { checkHealth, gatewayReady, legacyHealth } from "./health.js";

const servers: Server[] = [];

async function serve(handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** An address nothing listens on: a server's port, closed again. */
async function closedAddress(): Promise<string> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return `127.0.0.1:${port}`;
}

function healthServer(status: HealthCheckResponse_ServingStatus): Promise<string> {
  return serve(
    connectNodeAdapter({
      routes: (router) =>
        router.service(Health, {
          check: () => ({ status }),
          watch: async function* () {},
          list: () => ({ statuses: {} }),
        }),
    }),
  );
}

const hang: RequestListener = () => {}; // never answers

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe("gatewayReady", () => {
  it("is LIVE on 200, STARTING on 503, DOWN when nothing listens or no answer comes in time", async () => {
    const ok = await serve((req, res) => res.writeHead(req.url === "/ready" ? 200 : 404).end());
    const busy = await serve((_req, res) => res.writeHead(503).end("not ready"));
    expect(await gatewayReady(ok)).toBe("LIVE");
    expect(await gatewayReady(busy)).toBe("STARTING");
    expect(await gatewayReady(await closedAddress())).toBe("DOWN");
    const began = performance.now();
    expect(await gatewayReady(await serve(hang), 200)).toBe("DOWN");
    expect(performance.now() - began).toBeLessThan(2_000);
  });
});

describe("legacyHealth", () => {
  it("is SERVING on 200 at /healthz, NOT_SERVING on 503, DOWN when nothing listens or it hangs", async () => {
    const ok = await serve((req, res) => res.writeHead(req.url === "/healthz" ? 200 : 404).end("ok"));
    const sick = await serve((_req, res) => res.writeHead(503).end());
    expect(await legacyHealth(ok)).toBe("SERVING");
    expect(await legacyHealth(sick)).toBe("NOT_SERVING");
    expect(await legacyHealth(await closedAddress())).toBe("DOWN");
    expect(await legacyHealth(await serve(hang), 200)).toBe("DOWN");
  });
});

describe("checkHealth", () => {
  it("reads the status a Connect health service answers", async () => {
    expect(await checkHealth(await healthServer(HealthCheckResponse_ServingStatus.SERVING))).toBe("SERVING");
    expect(await checkHealth(await healthServer(HealthCheckResponse_ServingStatus.NOT_SERVING))).toBe(
      "NOT_SERVING",
    );
  });

  it("is DOWN on an error answer, when nothing listens, or when no answer comes in time", async () => {
    expect(await checkHealth(await serve((_req, res) => res.writeHead(503).end()))).toBe("DOWN");
    expect(await checkHealth(await closedAddress())).toBe("DOWN");
    const began = performance.now();
    expect(await checkHealth(await serve(hang), 200)).toBe("DOWN");
    expect(performance.now() - began).toBeLessThan(2_000);
  });
});
