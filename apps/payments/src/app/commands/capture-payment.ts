import type { Payment } from "../../domain/payment.js";
import type { PaymentRepository } from "../../domain/ports.js";

/** Captures an authorized payment; capturing it again changes nothing. */
export function capturePayment(deps: { payments: PaymentRepository }, paymentId: string): Promise<Payment> {
  return deps.payments.capture(paymentId);
}
