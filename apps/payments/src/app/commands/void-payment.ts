import type { Payment } from "../../domain/payment.js";
import type { PaymentRepository } from "../../domain/ports.js";

/**
 * Releases an authorization's hold; for an id never authorized, records a tombstone so a late
 * authorization is refused.
 */
export function voidPayment(deps: { payments: PaymentRepository }, paymentId: string): Promise<Payment> {
  return deps.payments.void(paymentId);
}
