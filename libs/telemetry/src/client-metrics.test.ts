import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, describe, expect, it } from "vitest";
import { createClientTracingInterceptor } from "./client-tracing.js";
import { recordsSpans } from "./id-tracer.js";
import { createTelemetry, type Telemetry } from "./telemetry.js";

const ORDER = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const LEAKY_ORDER = "0193a1b2-1111-7e5f-8a9b-0c1d2e3f4a5b";
const LEAKY_TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
const LEAKY_PARAM = "card-4242";
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
});

/** The Prometheus text `telemetry` serves. */
async function scrape(telemetry: Telemetry): Promise<string> {
  const server = createServer((req, res) => telemetry.metricsHandler(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** The value of the series `name` whose labels include every one of `labels`. */
function seriesValue(text: string, name: string, labels: string[]): number | undefined {
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

/** An orders client over an in-process router, through the client interceptor of `telemetry`. */
function clientOf(telemetry: Telemetry) {
  const transport = createRouterTransport(
    (router) =>
      router.service(OrderService, {
        getOrder(req) {
          if (req.id === LEAKY_ORDER) {
            throw new ConnectError(
              `lookup failed for ${LEAKY_TOKEN}: Failed query: select 1 where id = $1\nparams: ${LEAKY_PARAM}`,
              Code.Internal,
            );
          }
          if (req.id !== ORDER) throw new ConnectError("no such order", Code.NotFound);
          return { order: { id: req.id } };
        },
        async *watchOrder(req) {
          yield { order: { id: req.id } };
          yield { order: { id: req.id } };
        },
      }),
    { transport: { interceptors: [createClientTracingInterceptor(telemetry)] } },
  );
  return createClient(OrderService, transport);
}

describe("client RED metrics of the client interceptor", () => {
  it.each([
    ["ids only (nothing exports)", () => createTelemetry({ serviceName: "caller" })],
    [
      "recording spans",
      () =>
        createTelemetry({
          serviceName: "caller",
          spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())],
        }),
    ],
  ])("counts and times every call by method and code, a stream until its end: %s", async (_, make) => {
    const telemetry = make();
    expect(recordsSpans(telemetry.tracer)).toBe(_ === "recording spans");
    const orders = clientOf(telemetry);
    await orders.getOrder({ id: ORDER });
    await orders.getOrder({ id: ORDER });
    await expect(orders.getOrder({ id: "0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b" })).rejects.toThrow(
      "no such order",
    );
    const updates = [];
    for await (const u of orders.watchOrder({ id: ORDER })) updates.push(u);
    expect(updates).toHaveLength(2);
    // A second transport on the same telemetry adds to the same series (one family per name).
    await clientOf(telemetry).getOrder({ id: ORDER });

    const text = await scrape(telemetry);
    const method = (m: string) => ['rpc_service="meshwork.orders.v1.OrderService"', `rpc_method="${m}"`];
    expect(seriesValue(text, "rpc_client_requests_total", [...method("GetOrder"), 'rpc_code="ok"'])).toBe(3);
    expect(
      seriesValue(text, "rpc_client_requests_total", [...method("GetOrder"), 'rpc_code="not_found"']),
    ).toBe(1);
    expect(seriesValue(text, "rpc_client_requests_total", [...method("WatchOrder"), 'rpc_code="ok"'])).toBe(
      1,
    );
    expect(seriesValue(text, "rpc_client_duration_count", [...method("GetOrder"), 'rpc_code="ok"'])).toBe(3);
    expect(
      seriesValue(text, "rpc_client_duration_sum", [...method("GetOrder"), 'rpc_code="ok"']),
    ).toBeGreaterThan(0);
    expect(
      seriesValue(text, "rpc_client_duration_bucket", [...method("GetOrder"), 'rpc_code="ok"', 'le="+Inf"']),
    ).toBe(3);
    expect(text.match(/^# TYPE rpc_client_duration histogram$/gm)).toHaveLength(1);
    await telemetry.shutdown();
  });
});

describe("client spans of the client interceptor", () => {
  it("scrub a failed call's message before it becomes the span's status (statement parameters, tokens)", async () => {
    const exporter = new InMemorySpanExporter();
    const telemetry = createTelemetry({
      serviceName: "caller",
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    await expect(clientOf(telemetry).getOrder({ id: LEAKY_ORDER })).rejects.toThrow("lookup failed");
    const [span] = exporter.getFinishedSpans();
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
    expect(span?.status.message).toContain("lookup failed for [redacted]");
    expect(span?.status.message).toContain("params: [redacted]");
    expect(JSON.stringify(span?.status)).not.toContain(LEAKY_TOKEN);
    expect(JSON.stringify(span?.status)).not.toContain(LEAKY_PARAM);
    await telemetry.shutdown();
  });
});
