import type { LedgerEntry } from "../../domain/payment.js";
import type { ProviderBooks } from "../../domain/ports.js";

/** What the provider itself recorded for a payment, for the consistency checker. */
export function getProviderLedger(
  deps: { provider: ProviderBooks },
  paymentId: string,
): Promise<LedgerEntry[]> {
  return deps.provider.ledger(paymentId);
}
