import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";
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

  it("names a bad exporter setting", () => {
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(/OTEL_TRACES_EXPORTER/);
  });
});
