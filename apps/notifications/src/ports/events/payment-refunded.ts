import type { PaymentRefunded } from "@meshwork/contracts/meshwork/payments/v1/events";
import type { BatchEventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { formatMoney } from "./money.js";
import { notificationHandler } from "./notification-handler.js";

/** PaymentRefunded -> a "refund issued" notification. */
export function onPaymentRefunded(logger: Logger): BatchEventHandler {
  return notificationHandler<PaymentRefunded>(logger, (e) => ({
    userId: e.userId,
    kind: "payment.refunded",
    title: "Refund issued",
    body: `We refunded ${formatMoney(e.amount?.amountMinor ?? 0n, e.amount?.currency || "EUR")} (payment ${e.paymentId}).`,
  }));
}
