/**
 * Calls in flight per client address, against a limit: one client (one address) cannot hold
 * more than its share of the gateway and of the upstream connections, however many connections
 * and streams it opens (issue 25.2). A call past the limit is answered RESOURCE_EXHAUSTED at once.
 */
export class ClientCalls {
  readonly #inFlight = new Map<string, number>();

  constructor(readonly limit: number) {}

  /** Counts a call from `address`; false (not counted) when the address is at its limit. */
  take(address: string): boolean {
    const n = this.#inFlight.get(address) ?? 0;
    if (n >= this.limit) return false;
    this.#inFlight.set(address, n + 1);
    return true;
  }

  release(address: string): void {
    const n = (this.#inFlight.get(address) ?? 1) - 1;
    if (n <= 0) this.#inFlight.delete(address);
    else this.#inFlight.set(address, n);
  }

  /** Calls in flight from `address` now. */
  count(address: string): number {
    return this.#inFlight.get(address) ?? 0;
  }
}
