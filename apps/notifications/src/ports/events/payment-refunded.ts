import type { PaymentRefunded } from "@meshwork/contracts/meshwork/payments/v1/events";
import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { notificationHandler } from "./notification-handler.js";

/** An amount in minor units, written for people in its currency (JPY has no minor unit, EUR two). */
export function formatMoney(amountMinor: bigint, currency: string): string {
  const format = new Intl.NumberFormat("en", { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(Number(amountMinor) / 10 ** digits);
}

/** PaymentRefunded -> a "refund issued" notification. */
export function onPaymentRefunded(logger: Logger): EventHandler {
  return notificationHandler<PaymentRefunded>(logger, (e) => ({
    userId: e.userId,
    kind: "payment.refunded",
    title: "Refund issued",
    body: `We refunded ${formatMoney(e.amount?.amountMinor ?? 0n, e.amount?.currency || "EUR")} (payment ${e.paymentId}).`,
  }));
}
