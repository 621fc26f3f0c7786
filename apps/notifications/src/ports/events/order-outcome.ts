import type { OrderCancelled, OrderConfirmed } from "@meshwork/contracts/meshwork/orders/v1/events";
import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { createNotificationRepository } from "../../adapters/db/notification-repository.js";
import { recordNotification } from "../../app/commands/record-notification.js";
import { formatMoney } from "./payment-refunded.js";

/** OrderConfirmed -> "your order is confirmed", in the event's transaction. */
export function onOrderConfirmed(logger: Logger): EventHandler {
  return async (message, tx, event) => {
    const e = message as unknown as OrderConfirmed;
    const total = formatMoney(e.total?.amountMinor ?? 0n, e.total?.currency || "EUR");
    const n = await recordNotification(
      { notifications: createNotificationRepository(tx) },
      {
        userId: e.userId,
        kind: "order.confirmed",
        title: "Order confirmed",
        body: `Your order ${e.orderId} is confirmed and paid (${total}).`,
        eventId: event.id,
      },
    );
    logger.info({ event_id: event.id, user_id: e.userId, notification_id: n.id }, "notification recorded");
  };
}

/** OrderCancelled -> "your order was cancelled: <reason>", in the event's transaction. */
export function onOrderCancelled(logger: Logger): EventHandler {
  return async (message, tx, event) => {
    const e = message as unknown as OrderCancelled;
    const n = await recordNotification(
      { notifications: createNotificationRepository(tx) },
      {
        userId: e.userId,
        kind: "order.cancelled",
        title: "Order cancelled",
        body: `Your order ${e.orderId} was cancelled (${e.reason}); nothing was charged.`,
        eventId: event.id,
      },
    );
    logger.info({ event_id: event.id, user_id: e.userId, notification_id: n.id }, "notification recorded");
  };
}
