import { Code, type Protocol } from "../errors.js";
import type { Route } from "../routes.js";

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Backoff before the first retry, doubled for each further one, with jitter. */
  baseBackoffMs: number;
  /** Retries in flight at most this percent of the calls in flight... */
  budgetPercent: number;
  /** ...or this many, whichever is more. */
  minConcurrency: number;
}

/** Envoy's retry budget: retries in flight at most a share of the calls in flight (or a few). */
export class RetryBudget {
  /** Calls in flight. */
  active = 0;
  /** Retries in flight (waiting for their backoff). */
  retries = 0;

  constructor(readonly policy: RetryPolicy) {}

  allow(): boolean {
    const { minConcurrency, budgetPercent } = this.policy;
    return this.retries < Math.max(minConcurrency, (budgetPercent / 100) * this.active);
  }
}

/**
 * Whether a call may be retried at all: the contract marks the method idempotent and the call is
 * unary (its body can be kept and sent again).
 */
export function isRetryable(route: Route, pathKey: string, protocol: Protocol): boolean {
  return route.retryable.has(pathKey.slice(pathKey.lastIndexOf("/") + 1)) && protocol !== "connect-stream";
}

/**
 * Whether a failed attempt goes again: only with the request body kept, attempts left, and room
 * in the budget.
 */
export function mayRetry(budget: RetryBudget, attempt: number, bodyKept: boolean): boolean {
  return bodyKept && attempt < budget.policy.maxAttempts && budget.allow();
}

/** The wait before retry number `attempt` (1 for the first), ms: doubling, jittered by `random` in [0, 1). */
export function backoffMs(policy: RetryPolicy, attempt: number, random = Math.random()): number {
  return policy.baseBackoffMs * 2 ** (attempt - 1) * (0.5 + random);
}

/**
 * An answer that may go elsewhere: UNAVAILABLE (draining, not ready), or a plain HTTP 503 when
 * it carries no gRPC status.
 */
export function unavailableAnswer(grpcStatus: string | undefined, httpStatus: number): boolean {
  return grpcStatus === String(Code.Unavailable) || (grpcStatus === undefined && httpStatus === 503);
}
