import type { AuthorizeInput, Payment } from "../../domain/payment.js";
import type { PaymentRepository } from "../../domain/ports.js";

/**
 * Places a hold for the amount at the provider. Idempotent by payment id: a repeat gets the first
 * outcome, another user or amount under the same id is PaymentConflictError, a refusal by the
 * provider PaymentDeclinedError.
 */
export function authorizePayment(
  deps: { payments: PaymentRepository },
  input: AuthorizeInput,
): Promise<Payment> {
  return deps.payments.authorize(input);
}
