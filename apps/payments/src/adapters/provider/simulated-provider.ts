import { setTimeout as sleep } from "node:timers/promises";
import {
  type Faults,
  type LedgerEntry,
  type ProviderOperation,
  ProviderUnavailableError,
} from "../../domain/payment.js";

export type { LedgerEntry, ProviderOperation };

/**
 * The provider's own books: its idempotency records, which outlive a restart when they are kept
 * in a database (`createProviderLedger` in adapters/db), and what the consistency checker reads.
 */
export interface ProviderLedger {
  find(operation: ProviderOperation, paymentId: string): Promise<LedgerEntry | undefined>;
  /** Records an accepted call unless one is already recorded for it; returns the entry that stands. */
  record(entry: Omit<LedgerEntry, "recordedAt">): Promise<LedgerEntry>;
  /** Every entry of a payment, oldest first. */
  entries(paymentId: string): Promise<LedgerEntry[]>;
}

/** A ledger that lives as long as the process (unit tests, and tests that look at holds). */
export function memoryLedger(): ProviderLedger {
  const entries = new Map<string, LedgerEntry>();
  return {
    find: async (op, id) => entries.get(`${op}:${id}`),
    async record(entry) {
      const key = `${entry.operation}:${entry.paymentId}`;
      const stands = entries.get(key) ?? { ...entry, recordedAt: new Date() };
      entries.set(key, stands);
      return stands;
    },
    entries: async (id) => [...entries.values()].filter((e) => e.paymentId === id),
  };
}

/**
 * A stand-in for a card processor with a fault switch: every call waits the added latency, then
 * fails when the provider is hard down or (at the failure rate) at random; an authorization above
 * the limit is declined. Tests and demos flip the switch through SetFaults.
 *
 * Like a real processor it takes an idempotency key (the payment id): a repeated call for the same
 * payment and operation (a retry, or two racing calls) gets the first outcome and creates no
 * second hold, so the service may call it before it has recorded the payment. It keeps its own
 * books in a `ProviderLedger` (apart from the payments table): in a database, they survive a restart.
 */
export class SimulatedProvider {
  #faults: Faults;
  readonly #random: () => number;
  readonly #ledger: ProviderLedger;
  /** Outcomes by `<operation>:<payment id>` asked of this instance (in flight or done). */
  readonly #done = new Map<string, Promise<{ declined?: string }>>();
  /** Payments this instance placed a hold for: authorized, not voided. */
  readonly #held = new Set<string>();

  constructor(faults: Faults, random: () => number = Math.random, ledger: ProviderLedger = memoryLedger()) {
    this.#faults = { ...faults };
    this.#random = random;
    this.#ledger = ledger;
  }

  /** What the provider recorded for a payment, oldest first. */
  ledger(paymentId: string): Promise<LedgerEntry[]> {
    return this.#ledger.entries(paymentId);
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
    const attempt = this.#once(op, paymentId, amountMinor, signal);
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

  /** The recorded outcome if there is one (an earlier process's), else a new attempt, recorded. */
  async #once(
    op: ProviderOperation,
    paymentId: string,
    amountMinor: number,
    signal?: AbortSignal,
  ): Promise<{ declined?: string }> {
    const earlier = await this.#ledger.find(op, paymentId);
    const entry =
      earlier ??
      (await this.#ledger.record({
        paymentId,
        operation: op,
        amountMinor: op === "authorize" ? amountMinor : 0,
        declineReason: (await this.#attempt(op, amountMinor, signal)).declined ?? null,
      }));
    return entry.declineReason === null ? {} : { declined: entry.declineReason };
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
