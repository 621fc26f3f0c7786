import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createTelemetry } from "@meshwork/telemetry";
import { describe, expect, it } from "vitest";
import { cancellationKind, createOrderMetrics } from "./order-metrics.js";

describe("the business counters of orders", () => {
  it("labels a cancellation by the kind of its reason, never its text", () => {
    expect(cancellationKind("out of stock: product p1 has 0 left")).toBe("out_of_stock");
    expect(cancellationKind("payment declined: card expired")).toBe("payment_declined");
    expect(cancellationKind("payment refused: over the limit")).toBe("payment_refused");
    expect(cancellationKind("stock lost: reservation expired")).toBe("stock_lost");
    expect(cancellationKind("cancelled by the customer")).toBe("customer");
    expect(cancellationKind("the order no longer exists")).toBe("order_gone");
    expect(cancellationKind("payments unavailable: connect ECONNREFUSED 127.0.0.1:1")).toBe(
      "upstream_unavailable",
    );
    expect(cancellationKind("step capture timed out after 5000 ms")).toBe("other");
  });

  it("counts placed, confirmed (with the revenue) and cancelled orders, exported in Prometheus form", async () => {
    const telemetry = createTelemetry({ serviceName: "orders-test" });
    const metrics = createOrderMetrics(telemetry.meter);
    const order = {
      userId: "u",
      items: [{ productId: "p", quantity: 2 }],
      totalMinor: 2_400,
      currency: "EUR",
    };
    metrics.placed(order);
    metrics.placed(order);
    metrics.placed({ ...order, currency: "USD" });
    metrics.confirmed(order);
    metrics.confirmed({ ...order, totalMinor: 100 });
    metrics.cancelled({ ...order, currency: "USD" }, "out of stock: p has 1 left");

    const server = createServer((req, res) => telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const { port } = server.address() as AddressInfo;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const series = (name: string, ...labels: string[]) =>
        Number(
          text
            .split("\n")
            .find((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)))
            ?.split(" ")
            .at(-1),
        );
      expect(series("orders_placed_total", 'currency="EUR"')).toBe(2);
      expect(series("orders_placed_total", 'currency="USD"')).toBe(1);
      expect(series("orders_confirmed_total", 'currency="EUR"')).toBe(2);
      expect(series("orders_revenue_captured_total", 'currency="EUR"')).toBe(2_500);
      expect(series("orders_cancelled_total", 'currency="USD"', 'reason="out_of_stock"')).toBe(1);
    } finally {
      server.close();
      await telemetry.shutdown();
    }
  });
});
