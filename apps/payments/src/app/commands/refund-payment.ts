import type { Payment } from "../../domain/payment.js";
import type { PaymentRepository } from "../../domain/ports.js";

/** Refunds a captured payment and records PaymentRefunded; refunding it again changes nothing. */
export function refundPayment(deps: { payments: PaymentRepository }, paymentId: string): Promise<Payment> {
  return deps.payments.refund(paymentId);
}
