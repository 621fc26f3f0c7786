import type { Meter } from "@opentelemetry/api";
import type { PlacementData } from "../domain/order.js";

/** The business counters of orders, each counted once what it counts has committed. */
export interface OrderMetrics {
  placed(order: PlacementData): void;
  /** Confirmed: the payment was captured, so the order's total is revenue. */
  confirmed(order: PlacementData): void;
  cancelled(order: PlacementData, reason: string): void;
}

/**
 * The `reason` label of a cancellation: one of a few kinds, never the reason's text (which
 * carries an upstream's message and would make a series per message).
 */
export function cancellationKind(reason: string): string {
  const kinds: Array<[string, string]> = [
    ["out of stock", "out_of_stock"],
    ["payment declined", "payment_declined"],
    ["payment refused", "payment_refused"],
    ["stock lost", "stock_lost"],
    ["cancelled by the customer", "customer"],
    ["the order no longer exists", "order_gone"],
  ];
  for (const [prefix, kind] of kinds) if (reason.startsWith(prefix)) return kind;
  if (/^[a-z]+ unavailable/.test(reason)) return "upstream_unavailable";
  return "other";
}

/**
 * `orders.placed`, `orders.confirmed` and `orders.cancelled` (by `reason`, see
 * {@link cancellationKind}) by `currency`, and `orders.revenue.captured`: the totals of
 * confirmed orders, in minor units of their `currency` (cents), exact as integers.
 */
export function createOrderMetrics(meter: Meter): OrderMetrics {
  const placed = meter.createCounter("orders.placed", { description: "Orders placed (new, not repeats)" });
  const confirmed = meter.createCounter("orders.confirmed", {
    description: "Orders confirmed (stock committed, payment captured)",
  });
  const cancelled = meter.createCounter("orders.cancelled", {
    description: "Orders cancelled, by kind of reason",
  });
  const revenue = meter.createCounter("orders.revenue.captured", {
    description: "Totals of confirmed orders (payment captured), in minor units of the currency",
  });
  return {
    placed: (o) => placed.add(1, { currency: o.currency }),
    confirmed(o) {
      confirmed.add(1, { currency: o.currency });
      revenue.add(o.totalMinor, { currency: o.currency });
    },
    cancelled: (o, reason) => cancelled.add(1, { currency: o.currency, reason: cancellationKind(reason) }),
  };
}
