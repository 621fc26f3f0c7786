import { describe, expect, it } from "vitest";
import { breakerStates, consumerBacklog, outboxBacklog, parsePrometheusText, redFigures } from "./metrics.js";

// What a service of the mesh answers on /metrics (trimmed), as @opentelemetry/exporter-prometheus writes it.
const TEXT = `# HELP rpc_server_requests_total RPCs served, by service, method and code
# TYPE rpc_server_requests_total counter
rpc_server_requests_total{rpc_service="meshwork.orders.v1.OrderService",rpc_method="PlaceOrder",rpc_code="ok",otel_scope_name="meshwork"} 8
rpc_server_requests_total{rpc_service="meshwork.orders.v1.OrderService",rpc_method="PlaceOrder",rpc_code="invalid_argument",otel_scope_name="meshwork"} 2
rpc_server_requests_total{rpc_service="meshwork.orders.v1.OrderService",rpc_method="GetOrder",rpc_code="ok"} 5
rpc_server_requests_total{rpc_service="grpc.health.v1.Health",rpc_method="Check",rpc_code="ok"} 400
# TYPE rpc_server_duration_seconds histogram
rpc_server_duration_seconds_bucket{rpc_service="meshwork.orders.v1.OrderService",le="0.1"} 15
rpc_server_duration_seconds_sum{rpc_service="meshwork.orders.v1.OrderService",rpc_method="PlaceOrder"} 0.6
rpc_server_duration_seconds_count{rpc_service="meshwork.orders.v1.OrderService",rpc_method="PlaceOrder"} 10
rpc_server_duration_seconds_sum{rpc_service="meshwork.orders.v1.OrderService",rpc_method="GetOrder"} 0.015
rpc_server_duration_seconds_count{rpc_service="meshwork.orders.v1.OrderService",rpc_method="GetOrder"} 5
rpc_server_duration_seconds_sum{rpc_service="grpc.health.v1.Health",rpc_method="Check"} 40
rpc_server_duration_seconds_count{rpc_service="grpc.health.v1.Health",rpc_method="Check"} 400
# TYPE resilience_breaker_state gauge
resilience_breaker_state{upstream="payments"} 1
resilience_breaker_state{upstream="inventory"} 0
resilience_breaker_state{upstream="users"} 2
outbox_backlog 3
outbox_oldest_age_seconds 1.5
events_consumer_pending{messaging_consumer_group_name="notifications"} 7
events_consumer_ack_pending{messaging_consumer_group_name="notifications"} 1
weird{label="a \\"quoted\\" value"} 1
not a metric line
`;

describe("reading /metrics", () => {
  const samples = parsePrometheusText(TEXT);

  it("parses samples with labels, escaped quotes included, and skips comments and junk", () => {
    expect(samples.find((s) => s.name === "weird")?.labels.label).toBe('a "quoted" value');
    expect(samples.some((s) => s.name === "not")).toBe(false);
    expect(samples.filter((s) => s.name === "rpc_server_requests_total")).toHaveLength(4);
  });

  it("RED per method and in total, health probes left out, errors being any code but ok", () => {
    expect(redFigures(samples)).toEqual({
      requests: 15,
      errors: 2,
      meanMs: 41,
      methods: [
        { method: "meshwork.orders.v1.OrderService/GetOrder", requests: 5, errors: 0 },
        { method: "meshwork.orders.v1.OrderService/PlaceOrder", requests: 10, errors: 2 },
      ],
    });
    expect(redFigures([])).toEqual({ requests: 0, errors: 0, meanMs: 0, methods: [] });
  });

  it("RED of the gateway by route, from its admin's metrics", () => {
    const gateway =
      parsePrometheusText(`gateway_requests_total{route="/meshwork.orders.v1.OrderService/PlaceOrder",code="ok"} 4
gateway_requests_total{route="/meshwork.orders.v1.OrderService/PlaceOrder",code="unauthenticated"} 1
gateway_duration_seconds_sum{route="/meshwork.orders.v1.OrderService/PlaceOrder"} 0.5
gateway_duration_seconds_count{route="/meshwork.orders.v1.OrderService/PlaceOrder"} 5
`);
    expect(redFigures(gateway)).toEqual({
      requests: 5,
      errors: 1,
      meanMs: 100,
      methods: [{ method: "/meshwork.orders.v1.OrderService/PlaceOrder", requests: 5, errors: 1 }],
    });
  });

  it("breaker state per upstream, outbox backlog and consumer backlog", () => {
    expect(breakerStates(samples)).toEqual([
      { upstream: "inventory", state: "closed" },
      { upstream: "payments", state: "open" },
      { upstream: "users", state: "half-open" },
    ]);
    expect(outboxBacklog(samples)).toEqual({ backlog: 3, oldestAgeSeconds: 1.5 });
    expect(outboxBacklog(parsePrometheusText("x 1"))).toBeUndefined();
    expect(consumerBacklog(samples)).toEqual([{ consumer: "notifications", pending: 7, ackPending: 1 }]);
  });
});
