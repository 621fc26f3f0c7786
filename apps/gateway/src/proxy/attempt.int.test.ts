import http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { afterAll, describe, expect, it } from "vitest";
import { type GatewayConfig, loadConfig } from "../config.js";
import { createGateway, type Gateway } from "../gateway.js";

/** A raw HTTP/2 upstream that refuses every call as a draining Connect server does: 503 with its JSON error. */
async function startDrainingUpstream(withLength: boolean) {
  let calls = 0;
  const server = http2.createServer();
  server.on("stream", (stream) => {
    calls++;
    stream.resume();
    const body = Buffer.from(JSON.stringify({ code: "unavailable", message: "draining, try later" }));
    stream.respond({
      ":status": 503,
      "content-type": "application/json",
      ...(withLength ? { "content-length": String(body.length) } : {}),
    });
    stream.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    calls: () => calls,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe("an upstream attempt held back for a retry", () => {
  const gateways: Gateway[] = [];
  const upstreams: Array<{ close(): Promise<void> }> = [];
  afterAll(async () => {
    for (const g of gateways) await g.stop();
    for (const u of upstreams) await u.close();
  });

  it.each([
    ["with", true],
    ["without", false],
  ])(
    "passes the last UNAVAILABLE answer on whole, its body %s a content-length, when it may not go again",
    async (_, withLength) => {
      const upstream = await startDrainingUpstream(withLength);
      upstreams.push(upstream);
      const config: GatewayConfig = {
        ...loadConfig({ PORT: "0", ADMIN_PORT: "0", LOG_LEVEL: "silent", DISCOVERY: "static" }),
        upstreams: parseUpstreams(`users=${upstream.url}`),
        discovery: undefined,
        retryMaxAttempts: 2,
        defaultTimeoutMs: 10_000,
      };
      const gateway = createGateway({
        config,
        policies: new Map(
          UserService.methods.map((m) => [`/${UserService.typeName}/${m.name}`, { kind: "public" } as const]),
        ),
      });
      gateways.push(gateway);
      const { url } = await gateway.start();
      const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
      const err = await users.getUser({ id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      // The upstream's own error, not an empty 503 nor the gateway's deadline.
      expect(err?.code).toBe(Code.Unavailable);
      expect(err?.rawMessage).toBe("draining, try later");
      expect(upstream.calls()).toBe(2);
    },
  );
});
