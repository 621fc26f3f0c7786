import type { Payment } from "../../domain/payment.js";
import type { PaymentRepository } from "../../domain/ports.js";

export function getPayment(deps: { payments: PaymentRepository }, paymentId: string): Promise<Payment> {
  return deps.payments.get(paymentId);
}
