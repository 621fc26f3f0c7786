import { setTimeout as sleep } from "node:timers/promises";
import { type Faults, ProviderUnavailableError } from "../../domain/payment.js";

export type ProviderOperation = "authorize" | "capture" | "void" | "refund";

/**
 * A stand-in for a card processor with a fault switch: every call waits the added latency, then
 * fails when the provider is hard down or (at the failure rate) at random; an authorization above
 * the limit is declined. Tests and demos flip the switch through SetFaults.
 */
export class SimulatedProvider {
  #faults: Faults;
  readonly #random: () => number;

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

  /** Resolves when the provider accepted; `declined` is set for a refused authorization. */
  async call(op: ProviderOperation, amountMinor = 0, signal?: AbortSignal): Promise<{ declined?: string }> {
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
