import http from "node:http";
import http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { createTelemetry } from "@meshwork/telemetry";
import type { Tracer } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayConfig, loadConfig } from "./config.js";
import { createGateway } from "./gateway.js";

/** A stand-in OTLP/HTTP receiver (the collector of docker-compose.yml): keeps what it is sent. */
async function startReceiver() {
  const received: Array<{ path: string; contentType: string; body: Buffer }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({
        path: req.url ?? "",
        contentType: String(req.headers["content-type"]),
        body: Buffer.concat(chunks),
      });
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, received, close: () => server.close() };
}

describe("the gateway's spans", () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(() => receiver?.close());

  it("are exported over OTLP/HTTP when configured as for the services", async () => {
    const gateway = createGateway({
      config: loadConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      }),
    });
    const { url } = await gateway.start();
    const res = await fetch(`${url}/meshwork.nothing.v1.Nowhere/Call`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(501); // Connect's UNIMPLEMENTED
    // Stopping flushes the batch: the span of that call reaches the receiver.
    await gateway.stop();
    const traces = receiver.received.filter((r) => r.path === "/v1/traces");
    expect(traces.length).toBeGreaterThan(0);
    expect(Buffer.concat(traces.map((t) => t.body)).includes("gateway (no route)")).toBe(true);
  });

  it("builds no span per attempt when nothing records: every attempt carries the call's own context", async () => {
    // An upstream that refuses every call as a draining Connect server does (503), noting the
    // traceparent of each attempt.
    const seen: string[] = [];
    const upstream = http2.createServer();
    upstream.on("stream", (stream, headers) => {
      seen.push(String(headers.traceparent));
      stream.resume();
      stream.respond({ ":status": 503, "content-type": "application/json" });
      stream.end(JSON.stringify({ code: "unavailable", message: "draining" }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    // The id-only tracer (nothing exports), counting the spans asked of it.
    const telemetry = createTelemetry({ serviceName: "gateway" });
    let started = 0;
    const inner = telemetry.tracer;
    const counting: Tracer = {
      startSpan: (...args: Parameters<Tracer["startSpan"]>) => {
        started++;
        return inner.startSpan(...args);
      },
      startActiveSpan: inner.startActiveSpan.bind(inner) as Tracer["startActiveSpan"],
    };
    const config: GatewayConfig = {
      ...loadConfig({ PORT: "0", ADMIN_PORT: "0", LOG_LEVEL: "silent", DISCOVERY: "static" }),
      upstreams: parseUpstreams(`users=${upstreamUrl}`),
      discovery: undefined,
      retryMaxAttempts: 3,
    };
    const gateway = createGateway({
      config,
      telemetry: { ...telemetry, tracer: counting },
      policies: new Map(
        UserService.methods.map((m) => [`/${UserService.typeName}/${m.name}`, { kind: "public" } as const]),
      ),
    });
    try {
      const { url } = await gateway.start();
      const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const err = await users
        .getUser(
          { id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" },
          { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
        )
        .then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
      expect(err?.code).toBe(Code.Unavailable);
      expect(seen).toHaveLength(3);
      // One span for the call (its server span), none per attempt; each attempt continues the
      // caller's trace under the gateway's span id.
      expect(started).toBe(1);
      expect(new Set(seen).size).toBe(1);
      expect(seen[0]).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
      expect(seen[0]).not.toContain("00f067aa0ba902b7");
    } finally {
      await gateway.stop();
      upstream.close();
    }
  });

  it("names a bad exporter setting", () => {
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(/OTEL_TRACES_EXPORTER/);
  });
});
