import http2 from "node:http2";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayConfig, loadConfig } from "../config.js";
import { grpcMessage } from "../errors.js";
import { createGateway, type Gateway } from "../gateway.js";

/** How the raw upstream ends its gRPC answer, by the request's `x-answer` header. */
type Answer = "no-status" | "trailers-only-no-status" | "reset-mid-answer";

/** A raw HTTP/2 upstream that answers gRPC calls in broken ways. */
async function startBrokenUpstream() {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {}); // its own reset below
    stream.resume();
    const answer = headers["x-answer"] as Answer;
    if (answer === "trailers-only-no-status") {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { endStream: true });
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    if (answer === "reset-mid-answer") {
      stream.write(Buffer.from([0, 0, 0, 0, 0]), () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
      return;
    }
    // Trailers with metadata but no grpc-status.
    stream.on("wantTrailers", () => stream.sendTrailers({ "x-upstream": "yes" }));
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
}

/** One gRPC call over a raw HTTP/2 client: the answer's headers and trailers as sent. */
function rawCall(url: string, method: string, answer: Answer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({
      ":method": "POST",
      ":path": `/${UserService.typeName}/${method}`,
      "content-type": "application/grpc",
      te: "trailers",
      "x-answer": answer,
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on("response", (h) => {
      headers = h;
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("error", reject);
    req.resume();
    req.on("close", () => {
      session.close();
      resolve({ headers, trailers });
    });
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

describe("a gRPC answer's status through the gateway", () => {
  let upstream: Awaited<ReturnType<typeof startBrokenUpstream>>;
  let gateway: Gateway;
  let url: string;

  beforeAll(async () => {
    upstream = await startBrokenUpstream();
    const config: GatewayConfig = {
      ...loadConfig({ PORT: "0", ADMIN_PORT: "0", LOG_LEVEL: "silent", DISCOVERY: "static" }),
      upstreams: parseUpstreams(`users=${upstream.url}`),
      discovery: undefined,
      retryMaxAttempts: 1,
    };
    gateway = createGateway({
      config,
      policies: new Map(
        UserService.methods.map((m) => [`/${UserService.typeName}/${m.name}`, { kind: "public" } as const]),
      ),
    });
    url = (await gateway.start()).url;
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.close();
  });

  const missing = grpcMessage("upstream users ended the answer without grpc-status");

  // GetUser is retried (its answer held back until its end), RegisterUser streams through.
  it.each(["GetUser", "RegisterUser"])(
    "%s: trailers without grpc-status reach the client with UNKNOWN and why, their metadata kept",
    async (method) => {
      const { headers, trailers } = await rawCall(url, method, "no-status");
      expect(headers[":status"]).toBe(200);
      expect(trailers).toMatchObject({ "grpc-status": "2", "grpc-message": missing, "x-upstream": "yes" });
    },
  );

  it("a trailers-only answer without grpc-status reaches the client with UNKNOWN in its headers", async () => {
    const { headers } = await rawCall(url, "RegisterUser", "trailers-only-no-status");
    expect(headers).toMatchObject({ ":status": 200, "grpc-status": "2", "grpc-message": missing });
  });

  it("a status the gateway sends mid-answer is percent-encoded as the gRPC spec says (spaces kept)", async () => {
    const { trailers } = await rawCall(url, "RegisterUser", "reset-mid-answer");
    expect(trailers?.["grpc-status"]).toBe("14");
    const message = String(trailers?.["grpc-message"]);
    expect(message).toMatch(/^upstream users /);
    expect(message).toBe(grpcMessage(decodeURIComponent(message)));
  });
});
