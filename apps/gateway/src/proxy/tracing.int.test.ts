import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createTelemetry, type Telemetry, type TelemetryOptions } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayConfig, loadConfig } from "../config.js";
import { createGateway, type Gateway } from "../gateway.js";

type Processor = NonNullable<TelemetryOptions["spanProcessors"]>[number];
type Finished = Parameters<Processor["onEnd"]>[0];

/** Keeps every span that ends, from every tracer it is given to (gateway and upstreams alike). */
function recorder(): { processor: Processor; spans: Finished[] } {
  const spans: Finished[] = [];
  const processor: Processor = {
    onStart() {},
    onEnd(span) {
      spans.push(span);
    },
    forceFlush: async () => {},
    shutdown: async () => {},
  };
  return { processor, spans };
}

const OK = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const MISSING = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a12";
const METHOD = "meshwork.users.v1.UserService/GetUser";

/**
 * The gateway's upstream calls traced and measured as every client of the mesh: two real users
 * instances (runtime services with their own tracers) behind a real gateway, over real sockets.
 * The first attempt of each call is refused with UNAVAILABLE by whichever instance gets it, so
 * the gateway retries on the other one.
 */
describe("gateway: each attempt upstream is a CLIENT span and an rpc.client measurement", () => {
  const { processor, spans } = recorder();
  const telemetries: Telemetry[] = [];
  const instances: Service[] = [];
  /** Each instance's port, by its service name. */
  const portOf = new Map<string, number>();
  /** Trace ids whose first attempt was already refused. */
  const refused = new Set<string>();
  let gateway: Gateway;
  let url: string;
  let adminUrl: string;

  const startInstance = async (name: string) => {
    const telemetry = createTelemetry({ serviceName: name, spanProcessors: [processor] });
    telemetries.push(telemetry);
    const service = createService({
      name,
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      telemetry,
      routes(router) {
        router.service(UserService, {
          async getUser(req, ctx) {
            const traceId = ctx.requestHeader.get("traceparent")?.slice(3, 35) ?? "";
            if (!refused.has(traceId)) {
              refused.add(traceId);
              throw new ConnectError(`${name} is overloaded, try another instance`, Code.Unavailable);
            }
            if (req.id === MISSING) throw new ConnectError("no such user", Code.NotFound);
            return { user: { id: req.id } };
          },
        });
      },
    });
    instances.push(service);
    const { url } = await service.start();
    portOf.set(name, Number(new URL(url).port));
    return url;
  };

  beforeAll(async () => {
    const a = await startInstance("users-a");
    const b = await startInstance("users-b");
    const telemetry = createTelemetry({ serviceName: "gateway", spanProcessors: [processor] });
    telemetries.push(telemetry);
    const config: GatewayConfig = {
      ...loadConfig({ PORT: "0", ADMIN_PORT: "0", LOG_LEVEL: "silent", DISCOVERY: "static" }),
      upstreams: parseUpstreams(`users=${a},${b}`),
      discovery: undefined,
      retryMaxAttempts: 3,
    };
    gateway = createGateway({
      config,
      telemetry,
      policies: new Map(
        UserService.methods.map((m) => [`/${UserService.typeName}/${m.name}`, { kind: "public" } as const]),
      ),
    });
    ({ url, adminUrl } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    for (const s of instances) await s.shutdown();
    for (const t of telemetries) await t.shutdown();
  });

  const traceOf = (traceId: string) => spans.filter((s) => s.spanContext().traceId === traceId);
  const serviceOf = (s: Finished) => s.resource.attributes["service.name"];

  for (const protocol of ["grpc", "connect"] as const) {
    it(`${protocol}: a retried call shows two CLIENT spans under the gateway's SERVER span, each the parent of the instance's SERVER span it reached`, async () => {
      const traceId = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex");
      const transport =
        protocol === "grpc"
          ? createGrpcTransport({ baseUrl: url })
          : createConnectTransport({ baseUrl: url, httpVersion: "1.1" });
      const users = createClient(UserService, transport);
      const res = await users.getUser(
        { id: OK },
        { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
      );
      expect(res.user?.id).toBe(OK);

      const trace = await waitFor(
        () => {
          const all = traceOf(traceId);
          // The gateway's SERVER span ends last, once the answer went out.
          return all.some((s) => serviceOf(s) === "gateway" && s.kind === SpanKind.SERVER) ? all : undefined;
        },
        { what: `the gateway's SERVER span of trace ${traceId}` },
      );
      const server = trace.find((s) => serviceOf(s) === "gateway" && s.kind === SpanKind.SERVER);
      expect(server?.name).toBe(METHOD);
      expect(server?.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
      expect(server?.attributes["rpc.system"]).toBe(protocol === "grpc" ? "grpc" : "connect_rpc");

      const attempts = trace
        .filter((s) => serviceOf(s) === "gateway" && s.kind === SpanKind.CLIENT)
        .sort((x, y) => Number(x.attributes["meshwork.attempt"]) - Number(y.attributes["meshwork.attempt"]));
      expect(attempts).toHaveLength(2);
      const upstreamServers = trace.filter((s) => serviceOf(s) !== "gateway" && s.kind === SpanKind.SERVER);
      expect(upstreamServers).toHaveLength(2);
      const ports = new Set<unknown>();
      for (const [i, attempt] of attempts.entries()) {
        expect(attempt.name).toBe(METHOD);
        expect(attempt.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);
        expect(attempt.attributes).toMatchObject({
          "rpc.system": protocol === "grpc" ? "grpc" : "connect_rpc",
          "rpc.service": "meshwork.users.v1.UserService",
          "rpc.method": "GetUser",
          "server.address": "127.0.0.1",
          "meshwork.attempt": i + 1,
        });
        // The instance that answered this attempt is the one at its server.port, under it.
        const reached = upstreamServers.filter(
          (s) => s.parentSpanContext?.spanId === attempt.spanContext().spanId,
        );
        expect(reached).toHaveLength(1);
        expect(portOf.get(String(serviceOf(reached[0] as Finished)))).toBe(attempt.attributes["server.port"]);
        ports.add(attempt.attributes["server.port"]);
      }
      expect(ports.size).toBe(2);
      const [first, second] = attempts;
      if (protocol === "grpc") {
        expect(first?.attributes["rpc.grpc.status_code"]).toBe(Code.Unavailable);
        expect(second?.attributes["rpc.grpc.status_code"]).toBe(0);
      } else {
        expect(first?.attributes["rpc.connect_rpc.error_code"]).toBe("unavailable");
        expect(second?.attributes["rpc.connect_rpc.error_code"]).toBeUndefined();
      }
      expect(first?.attributes["error.type"]).toBe("unavailable");
      expect(first?.status.code).toBe(SpanStatusCode.ERROR);
      expect(second?.status.code).not.toBe(SpanStatusCode.ERROR);
    });
  }

  it("counts and times each attempt as rpc.client.requests / rpc.client.duration by code, the Connect code read from the answer's body", async () => {
    const metricsOf = async () => (await fetch(`${adminUrl}/stats/prometheus`)).text();
    const value = (text: string, series: string, labels: string[]) => {
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`${series}{`) && labels.every((label) => l.includes(label)));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    const getUser = ['rpc_service="meshwork.users.v1.UserService"', 'rpc_method="GetUser"'];
    const connect = [...getUser, 'rpc_system="connect_rpc"'];
    const before = await metricsOf();

    const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
    const err = await users.getUser({ id: MISSING }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.NotFound);

    const after = await metricsOf();
    const delta = (series: string, labels: string[]) =>
      value(after, series, labels) - value(before, series, labels);
    // The refused attempt and the answered one, each with its own code (NOT_FOUND is HTTP 404,
    // which Connect's HTTP mapping alone would call UNIMPLEMENTED).
    expect(delta("rpc_client_requests_total", [...connect, 'rpc_code="unavailable"'])).toBe(1);
    expect(delta("rpc_client_requests_total", [...connect, 'rpc_code="not_found"'])).toBe(1);
    expect(delta("rpc_client_requests_total", [...connect, 'rpc_code="unimplemented"'])).toBe(0);
    expect(delta("rpc_client_duration_count", [...connect, 'rpc_code="not_found"'])).toBe(1);
    expect(
      value(after, "rpc_client_duration_bucket", [...connect, 'rpc_code="not_found"', 'le="+Inf"']),
    ).toBe(value(after, "rpc_client_duration_count", [...connect, 'rpc_code="not_found"']));
    // The gRPC calls of the tests before: one refused and one answered attempt.
    const grpcCalls = [...getUser, 'rpc_system="grpc"'];
    expect(value(after, "rpc_client_requests_total", [...grpcCalls, 'rpc_code="unavailable"'])).toBe(1);
    expect(value(after, "rpc_client_requests_total", [...grpcCalls, 'rpc_code="ok"'])).toBe(1);
  });
});
