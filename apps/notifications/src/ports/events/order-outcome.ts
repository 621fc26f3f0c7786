import type { OrderCancelled, OrderConfirmed } from "@meshwork/contracts/meshwork/orders/v1/events";
import type { BatchEventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { formatMoney } from "./money.js";
import { notificationHandler } from "./notification-handler.js";

/** OrderConfirmed -> "your order is confirmed". */
export function onOrderConfirmed(logger: Logger): BatchEventHandler {
  return notificationHandler<OrderConfirmed>(logger, (e) => ({
    userId: e.userId,
    kind: "order.confirmed",
    title: "Order confirmed",
    body: `Your order ${e.orderId} is confirmed and paid (${formatMoney(e.total?.amountMinor ?? 0n, e.total?.currency || "EUR")}).`,
  }));
}

/**
 * OrderCancelled -> "your order was cancelled: <reason>", and what happened to the money: a
 * payment captured and then refunded is said so ("nothing was charged" would be false).
 */
export function onOrderCancelled(logger: Logger): BatchEventHandler {
  return notificationHandler<OrderCancelled>(logger, (e) => ({
    userId: e.userId,
    kind: "order.cancelled",
    title: "Order cancelled",
    body: e.paymentRefunded
      ? `Your order ${e.orderId} was cancelled (${e.reason}); your payment was refunded in full.`
      : `Your order ${e.orderId} was cancelled (${e.reason}); nothing was charged.`,
  }));
}
