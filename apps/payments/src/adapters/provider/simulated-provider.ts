import { setTimeout as sleep } from "node:timers/promises";
import { type Faults, ProviderUnavailableError } from "../../domain/payment.js";

export type ProviderOperation = "authorize" | "capture" | "void" | "refund";

/**
 * A stand-in for a card processor with a fault switch: every call waits the added latency, then
 * fails when the provider is hard down or (at the failure rate) at random; an authorization above
 * the limit is declined. Tests and demos flip the switch through SetFaults.
 *
 * Like a real processor it takes an idempotency key (the payment id): a repeated call for the same
 * payment and operation (a retry, or two racing calls) gets the first outcome and creates no
 * second hold, so the service may call it before it has recorded the payment.
 */
export class SimulatedProvider {
  #faults: Faults;
  readonly #random: () => number;
  /** Outcomes by `<operation>:<payment id>`: the provider's own idempotency records. */
  readonly #done = new Map<string, Promise<{ declined?: string }>>();
  /** Payments with a hold in place: authorized, not voided. */
  readonly #held = new Set<string>();

  constructor(faults: Faults, random: () => number = Math.random) {
    this.#faults = { ...faults };
    this.#random = random;
  }

  get faults(): Faults {
    return { ...this.#faults };
  }

  set faults(f: Faults) {
    this.#faults = { ...f };
  }

  /** Holds in place (authorizations accepted and not voided), for tests. */
  get holds(): number {
    return this.#held.size;
  }

  /** Whether `op` was asked for this payment (and did not fail), for tests. */
  asked(op: ProviderOperation, paymentId: string): boolean {
    return this.#done.has(`${op}:${paymentId}`);
  }

  /**
   * Resolves when the provider accepted; `declined` is set for a refused authorization. A failed
   * call (down, random failure) is not remembered: trying again really tries again.
   */
  call(
    op: ProviderOperation,
    paymentId: string,
    amountMinor = 0,
    signal?: AbortSignal,
  ): Promise<{ declined?: string }> {
    const key = `${op}:${paymentId}`;
    const earlier = this.#done.get(key);
    if (earlier) return earlier;
    const attempt = this.#attempt(op, amountMinor, signal);
    this.#done.set(key, attempt);
    attempt.then(
      (outcome) => {
        if (op === "authorize" && !outcome.declined) this.#held.add(paymentId);
        if (op === "void") this.#held.delete(paymentId);
      },
      () => this.#done.delete(key),
    );
    return attempt;
  }

  async #attempt(
    op: ProviderOperation,
    amountMinor: number,
    signal?: AbortSignal,
  ): Promise<{ declined?: string }> {
    const f = this.#faults;
    if (f.addedLatencyMs > 0) await sleep(f.addedLatencyMs, undefined, { signal });
    if (f.hardDown) throw new ProviderUnavailableError(op, "the provider is down");
    if (f.failureRate > 0 && this.#random() < f.failureRate) {
      throw new ProviderUnavailableError(op, "the provider did not answer");
    }
    if (op === "authorize" && f.declineAboveMinor > 0 && amountMinor > f.declineAboveMinor) {
      return { declined: `amount ${amountMinor} is over the limit of ${f.declineAboveMinor}` };
    }
    return {};
  }
}
