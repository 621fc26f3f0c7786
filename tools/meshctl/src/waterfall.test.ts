import type { StoredSpan, StoredTrace } from "@meshwork/tracestore";
import { summarize } from "@meshwork/tracestore";
import { describe, expect, it } from "vitest";
import { formatMs, renderLogLines, renderTraceList, renderWaterfall } from "./waterfall.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const OTHER = "0af7651916cd43dd8448eb211c80319c";
const T0 = 1_700_000_000_000_000_000n;
const at = (ms: number) => String(T0 + BigInt(Math.round(ms * 1e6)));

function span(
  id: string,
  name: string,
  service: string,
  from: number,
  to: number,
  over: Partial<StoredSpan> = {},
): StoredSpan {
  return {
    traceId: TRACE,
    spanId: id.padStart(16, "0"),
    name,
    kind: "internal",
    service,
    startTimeUnixNano: at(from),
    endTimeUnixNano: at(to),
    durationMs: to - from,
    status: { code: "unset" },
    attributes: {},
    resource: { "service.name": service },
    scope: { name: "test" },
    events: [],
    links: [],
    ...over,
    ...(over.parentSpanId ? { parentSpanId: over.parentSpanId.padStart(16, "0") } : {}),
  };
}

/** A PlaceOrder as the mesh makes it: gateway, orders, a saga step calling payments, an outbox
 * publish, and the notifications consumer in a trace of its own, joined by its link. */
function placeOrder(): StoredTrace {
  const spans = [
    span("a1", "POST /meshwork.orders.v1.OrderService/PlaceOrder", "gateway", 0, 100, {
      kind: "server",
      status: { code: "ok" },
    }),
    span("b2", "meshwork.orders.v1.OrderService/PlaceOrder", "orders", 5, 40, {
      kind: "server",
      parentSpanId: "a1",
    }),
    span("c3", "INSERT orders", "orders", 10, 20, {
      kind: "client",
      parentSpanId: "b2",
      events: [{ name: "rows", timeUnixNano: at(15), attributes: { count: 1 } }],
    }),
    span("d4", "saga order-placement authorize-payment", "orders", 45, 95, { parentSpanId: "a1" }),
    span("e5", "meshwork.payments.v1.PaymentService/AuthorizePayment", "payments", 50, 90, {
      kind: "server",
      parentSpanId: "d4",
      status: { code: "error", message: "card declined" },
      events: [
        {
          name: "exception",
          timeUnixNano: at(88.5),
          attributes: { "exception.type": "PaymentDeclined", "exception.message": "card declined" },
        },
      ],
    }),
    span("f6", "publish orders.placed", "orders", 30, 32.5, { kind: "producer", parentSpanId: "b2" }),
  ];
  const consumer = span("99", "process orders.placed", "notifications", 60, 64.25, {
    traceId: OTHER,
    kind: "consumer",
    links: [{ traceId: TRACE, spanId: "f6".padStart(16, "0"), attributes: {} }],
  });
  return { summary: summarize(TRACE, spans), spans, linked: [consumer] };
}

describe("renderWaterfall", () => {
  it("draws a known trace line by line: tree, services, offsets, bars, durations, status, events, link", () => {
    const lines = renderWaterfall(placeOrder(), { barWidth: 20 });
    expect(lines).toEqual([
      "trace 4bf92f3577b34da6a3ce929d0e0e4736  POST /meshwork.orders.v1.OrderService/PlaceOrder  6 spans  3 services  100.0ms  OK  1 error",
      "SPAN                                                      SERVICE            START  TIMELINE                 DURATION  STATUS",
      "POST /meshwork.orders.v1.OrderService/PlaceOrder          gateway          +0.00ms  |████████████████████|    100.0ms  OK",
      "  meshwork.orders.v1.OrderService/PlaceOrder              orders           +5.00ms  | ███████            |    35.00ms  -",
      "    INSERT orders                                         orders          +10.00ms  |  ██                |    10.00ms  -",
      "      · +15.00ms rows count=1",
      "    publish orders.placed                                 orders          +30.00ms  |      █             |     2.50ms  -",
      "      ↪ process orders.placed [trace 0af76519]            notifications   +60.00ms  |            █       |     4.25ms  -",
      "  saga order-placement authorize-payment                  orders          +45.00ms  |         ██████████ |    50.00ms  -",
      "    meshwork.payments.v1.PaymentService/AuthorizePayment  payments        +50.00ms  |          ████████  |    40.00ms  ERROR card declined",
      "      ! +88.50ms PaymentDeclined: card declined",
    ]);
  });

  it("cuts long names, keeps a bar of one character for an instant span, and says when there are no spans", () => {
    const t = placeOrder();
    const instant = span("ff", "cache hit", "orders", 70, 70, { parentSpanId: "a1" });
    const lines = renderWaterfall(
      { ...t, spans: [...t.spans, instant], linked: [] },
      { barWidth: 10, maxNameWidth: 20 },
    );
    expect(lines[2]).toBe("POST /meshwork.orde…  gateway     +0.00ms  |██████████|    100.0ms  OK");
    expect(lines[3]).toBe("  meshwork.orders.v…  orders      +5.00ms  |████      |    35.00ms  -");
    expect(lines.at(-1)).toBe("  cache hit           orders     +70.00ms  |       █  |     0.00ms  -");
    expect(renderWaterfall({ summary: t.summary, spans: [] })).toEqual([`trace ${TRACE}: no spans`]);
  });
});

describe("renderTraceList and renderLogLines", () => {
  it("lists traces with root, services, spans, duration, status and errors", () => {
    const t = placeOrder();
    expect(renderTraceList([t.summary]).split("\n")).toEqual([
      "TRACE                             STARTED       ROOT                                              SERVICES                 SPANS  DURATION  STATUS  ERRORS",
      "--------------------------------  ------------  ------------------------------------------------  -----------------------  -----  --------  ------  ------",
      "4bf92f3577b34da6a3ce929d0e0e4736  22:13:20.000  POST /meshwork.orders.v1.OrderService/PlaceOrder  gateway,orders,payments  6      100.0ms   OK      1",
    ]);
  });

  it("prints log lines in the order given with the fields beyond the message", () => {
    const raw = JSON.stringify({
      level: "info",
      time: "2023-11-14T22:13:20.005Z",
      service: "orders",
      msg: "order placed",
      order: "o-1",
      trace_id: TRACE,
    });
    expect(
      renderLogLines([
        {
          timeMs: Date.parse("2023-11-14T22:13:20.005Z"),
          service: "orders",
          level: "info",
          msg: "order placed",
          traceId: TRACE,
          raw,
        },
        {
          timeMs: Date.parse("2023-11-14T22:13:20.050Z"),
          service: "payments",
          level: "warn",
          msg: "plain text",
          raw: "plain text",
        },
      ]),
    ).toEqual([
      '2023-11-14T22:13:20.005Z orders   INFO  order placed {"order":"o-1"}',
      "2023-11-14T22:13:20.050Z payments WARN  plain text",
    ]);
    expect(formatMs(0.4221)).toBe("0.42ms");
    expect(formatMs(1250)).toBe("1.25s");
  });
});
