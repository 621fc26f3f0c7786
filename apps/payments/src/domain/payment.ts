export type PaymentState = "authorized" | "captured" | "voided" | "refunded" | "declined";

export interface Payment {
  id: string;
  /** Null only for a void that came before any authorization (a tombstone). */
  userId: string | null;
  amountMinor: number | null;
  currency: string | null;
  state: PaymentState;
  declineReason: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** What an authorization asks for; the payment id is the caller's idempotency key. */
export interface AuthorizeInput {
  paymentId: string;
  userId: string;
  amountMinor: number;
  currency: string;
}

export type ProviderOperation = "authorize" | "capture" | "void" | "refund";

/** One call the payment provider accepted, as its own books record it. */
export interface LedgerEntry {
  paymentId: string;
  operation: ProviderOperation;
  /** What an authorization was for; 0 for the other operations. */
  amountMinor: number;
  declineReason: string | null;
  recordedAt: Date;
}

/** The simulated provider's behaviour (one per instance). */
export interface Faults {
  /** 0..1: share of provider calls that fail as if the provider were unreachable. */
  failureRate: number;
  addedLatencyMs: number;
  hardDown: boolean;
  /** Authorizations above this many minor units are declined; 0: no limit. */
  declineAboveMinor: number;
}

export class PaymentNotFoundError extends Error {
  override readonly name = "PaymentNotFoundError";
  constructor(readonly paymentId: string) {
    super(`payment ${paymentId} not found`);
  }
}

/** The same payment id with another user or amount. */
export class PaymentConflictError extends Error {
  override readonly name = "PaymentConflictError";
  constructor(readonly paymentId: string) {
    super(`payment ${paymentId} already exists with another user or amount`);
  }
}

/** A transition the payment's state does not allow. */
export class PaymentStateError extends Error {
  override readonly name = "PaymentStateError";
  constructor(
    readonly paymentId: string,
    readonly state: PaymentState,
    action: string,
  ) {
    super(`payment ${paymentId} is ${state}: cannot ${action} it`);
  }
}

/** The provider refused the authorization: a business outcome, not a fault. */
export class PaymentDeclinedError extends Error {
  override readonly name = "PaymentDeclinedError";
  constructor(
    readonly paymentId: string,
    readonly reason: string,
  ) {
    super(`payment ${paymentId} declined: ${reason}`);
  }
}

/** The provider failed or is down; nothing was recorded, so the call may be retried. */
export class ProviderUnavailableError extends Error {
  override readonly name = "ProviderUnavailableError";
  constructor(operation: string, why: string) {
    super(`payment provider unavailable during ${operation}: ${why}`);
  }
}
