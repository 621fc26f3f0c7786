import http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayConfig, loadConfig } from "./config.js";
import { createGateway, type Gateway } from "./gateway.js";

const ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/** A raw HTTP/2 upstream answering every stream with `answer`; counts the calls. */
async function startFakeUpstream(
  answer: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
) {
  let calls = 0;
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    calls++;
    answer(stream, headers);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    calls: () => calls,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/**
 * An upstream that dies mid-answer: it sends the response headers (and, with `data`, a first
 * message frame), then its connection is destroyed, as when the process is SIGKILLed.
 */
const startDyingUpstream = (data: boolean, stall = false) =>
  startFakeUpstream((stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    if (data) stream.write(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00]));
    // `stall`: the answer never ends (a stream that outlives its deadline).
    if (!stall) setImmediate(() => stream.session?.destroy());
  });

/**
 * An upstream whose Connect or gRPC-Web answers stop short: headers and part of the body, then
 * the stream is closed with NO_ERROR, which Node's client ends like a complete answer.
 */
const startShortUpstream = () =>
  startFakeUpstream((stream, headers) => {
    if (String(headers["content-type"]).startsWith("application/grpc-web")) {
      stream.respond({ ":status": 200, "content-type": "application/grpc-web+proto" });
      stream.write(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00])); // a message, no trailer frame
    } else {
      stream.respond({ ":status": 200, "content-type": "application/proto", "content-length": "40" });
      stream.write(Buffer.from([0x0a, 0x26, 0x0a])); // 3 of the 40 bytes announced
    }
    setImmediate(() => stream.close(http2.constants.NGHTTP2_NO_ERROR));
  });

describe("the gateway when an upstream dies mid-answer", () => {
  let healthy: Service;
  let healthyUrl: string;
  const gateways: Gateway[] = [];
  const dying: Array<Awaited<ReturnType<typeof startDyingUpstream>>> = [];

  beforeAll(async () => {
    healthy = createService({
      name: "users",
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      routes(router) {
        router.service(UserService, { getUser: async (req) => ({ user: { id: req.id } }) });
      },
    });
    healthyUrl = (await healthy.start()).url;
  });
  afterAll(async () => {
    for (const g of gateways) await g.stop();
    for (const d of dying) await d.close();
    await healthy?.shutdown();
  });

  const gatewayTo = async (upstreams: string, env: Record<string, string> = {}) => {
    const config: GatewayConfig = {
      ...loadConfig({ PORT: "0", ADMIN_PORT: "0", LOG_LEVEL: "silent", DISCOVERY: "static", ...env }),
      upstreams: parseUpstreams(upstreams),
      discovery: undefined, // the endpoints as given, trusted: the dying one must be picked
    };
    const gateway = createGateway({
      config,
      policies: new Map(
        UserService.methods.map((m) => [`/${UserService.typeName}/${m.name}`, { kind: "public" } as const]),
      ),
    });
    gateways.push(gateway);
    const { url } = await gateway.start();
    return Object.assign(createClient(UserService, createGrpcTransport({ baseUrl: url })), { url });
  };

  // With a message sent before dying, that message (an empty user) was held back, never passed on.
  it.each([
    ["nothing of the answer was passed on yet", false],
    ["the upstream dies between its message and its trailers", true],
  ])("retries an idempotent call elsewhere when %s", async (_, withMessage) => {
    const bad = await startDyingUpstream(withMessage);
    dying.push(bad);
    const client = await gatewayTo(`users=${bad.url},${healthyUrl}`);
    const { user } = await client.getUser({ id: ID });
    expect(user?.id).toBe(ID);
    expect(bad.calls()).toBe(1);
  });

  it("never passes on a Connect or gRPC-Web answer cut short as whole: it is retried elsewhere", async () => {
    const short = await startShortUpstream();
    dying.push(short);
    const { url } = await gatewayTo(`users=${short.url},${healthyUrl}`);
    for (const transport of [
      createGrpcWebTransport({ baseUrl: url, httpVersion: "2" }),
      createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: true }),
    ]) {
      const before = short.calls();
      const { user } = await createClient(UserService, transport).getUser({ id: ID });
      expect(user?.id).toBe(ID);
      expect(short.calls()).toBe(before + 1);
    }
  });

  it("ends an answer cut off after its first bytes on every try with UNAVAILABLE, not as a complete answer", async () => {
    const bad = await startDyingUpstream(true);
    dying.push(bad);
    const client = await gatewayTo(`users=${bad.url}`);
    const err = await client.getUser({ id: ID }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.rawMessage).toMatch(/^upstream users /);
  });

  it("ends an answer that outlives the deadline with DEADLINE_EXCEEDED trailers, not a reset", async () => {
    const slow = await startDyingUpstream(true, true);
    dying.push(slow);
    const client = await gatewayTo(`users=${slow.url}`, { DEFAULT_TIMEOUT_MS: "300" });
    const err = await client.getUser({ id: ID }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.DeadlineExceeded);
  });
});
