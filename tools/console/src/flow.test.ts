import type { StoredSpan, StoredTrace } from "@meshwork/tracestore";
import { describe, expect, it } from "vitest";
import { flowMap } from "./flow.js";

let next = 1;
function span(
  service: string,
  kind: StoredSpan["kind"],
  parent: StoredSpan | undefined,
  over: Partial<StoredSpan> = {},
): StoredSpan {
  const start = 1_700_000_000_000n + BigInt(next);
  return {
    traceId: "a".repeat(32),
    spanId: (next++).toString(16).padStart(16, "0"),
    parentSpanId: parent?.spanId,
    name: `${service} ${kind}`,
    kind,
    service,
    startTimeUnixNano: String(start * 1_000_000n),
    endTimeUnixNano: String((start + 5n) * 1_000_000n),
    durationMs: 5,
    status: { code: "unset" },
    attributes: {},
    resource: {},
    scope: { name: "t" },
    events: [],
    links: [],
    ...over,
  };
}

function trace(spans: StoredSpan[]): StoredTrace {
  return { summary: {} as StoredTrace["summary"], spans };
}

describe("flowMap", () => {
  it("draws calls, queries, publishes and consumes from spans, counting calls and errors", () => {
    const traces = [0, 1].map((i) => {
      const edge = span("gateway", "server", undefined);
      const out = span("gateway", "client", edge);
      const orders = span("orders", "server", out);
      const call = span("orders", "client", orders);
      const payments = span("payments", "server", call, i === 1 ? { status: { code: "error" } } : {});
      const query = span("payments", "client", payments, {
        attributes: { "db.namespace": "meshwork_payments" },
      });
      const publish = span("orders", "producer", orders, {
        attributes: { "messaging.destination.name": "ns.OrderPlaced" },
      });
      const consume = span("notifications", "consumer", publish, {
        attributes: { "messaging.destination.name": "ns.OrderPlaced" },
      });
      return trace([edge, out, orders, call, payments, query, publish, consume]);
    });
    const map = flowMap(traces);
    expect(map.traces).toBe(2);
    expect(map.nodes.map((n) => [n.id, n.kind])).toEqual([
      ["database:meshwork_payments", "database"],
      ["service:gateway", "service"],
      ["service:notifications", "service"],
      ["service:orders", "service"],
      ["service:payments", "service"],
      ["subject:ns.OrderPlaced", "subject"],
    ]);
    expect(map.edges.map((e) => [e.from, e.to, e.kind, Number(e.calls), Number(e.errors)])).toEqual([
      ["service:gateway", "service:orders", "rpc", 2, 0],
      ["service:orders", "service:payments", "rpc", 2, 1],
      ["service:orders", "subject:ns.OrderPlaced", "publish", 2, 0],
      ["service:payments", "database:meshwork_payments", "query", 2, 0],
      ["subject:ns.OrderPlaced", "service:notifications", "consume", 2, 0],
    ]);
    expect(map.windowSeconds).toBeGreaterThan(0);
    expect(map.edges[0]?.ratePerSecond).toBeCloseTo(2 / map.windowSeconds);
  });

  it("is empty without traces", () => {
    const map = flowMap([]);
    expect(map.nodes).toEqual([]);
    expect(map.edges).toEqual([]);
    expect(map.windowSeconds).toBe(0);
  });
});
