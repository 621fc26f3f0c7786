import type { AuthorizeInput, Faults, LedgerEntry, Payment } from "./payment.js";

/**
 * Payments, moved through the provider: every call is idempotent by payment id, and a provider
 * failure changes nothing (ProviderUnavailableError: the call may be retried).
 */
export interface PaymentRepository {
  /** PaymentDeclinedError when the provider refuses; a repeat answers as the first call did. */
  authorize(input: AuthorizeInput): Promise<Payment>;
  capture(id: string): Promise<Payment>;
  /** For an unknown id, records a voided tombstone so a late authorization is refused. */
  void(id: string): Promise<Payment>;
  /** Records PaymentRefunded with the refund. */
  refund(id: string): Promise<Payment>;
  get(id: string): Promise<Payment>;
}

/** The provider's fault switch (per instance). */
export interface FaultSwitch {
  faults: Faults;
}

/** The provider's own books, kept apart from the payments table. */
export interface ProviderBooks {
  /** What the provider recorded for a payment, oldest first. */
  ledger(paymentId: string): Promise<LedgerEntry[]>;
}
