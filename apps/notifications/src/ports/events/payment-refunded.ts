import type { PaymentRefunded } from "@meshwork/contracts/meshwork/payments/v1/events";
import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { createNotificationRepository } from "../../adapters/db/notification-repository.js";
import { recordNotification } from "../../app/commands/record-notification.js";

/** An amount in minor units, written for people in its currency (JPY has no minor unit, EUR two). */
export function formatMoney(amountMinor: bigint, currency: string): string {
  const format = new Intl.NumberFormat("en", { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(Number(amountMinor) / 10 ** digits);
}

/** PaymentRefunded -> a "refund issued" notification, in the event's transaction. */
export function onPaymentRefunded(logger: Logger): EventHandler {
  return async (message, tx, event) => {
    const e = message as unknown as PaymentRefunded;
    const amount = formatMoney(e.amount?.amountMinor ?? 0n, e.amount?.currency || "EUR");
    const n = await recordNotification(
      { notifications: createNotificationRepository(tx) },
      {
        userId: e.userId,
        kind: "payment.refunded",
        title: "Refund issued",
        body: `We refunded ${amount} (payment ${e.paymentId}).`,
        eventId: event.id,
      },
    );
    logger.info({ event_id: event.id, user_id: e.userId, notification_id: n.id }, "notification recorded");
  };
}
