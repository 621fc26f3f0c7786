/**
 * What each client address has in the gateway, against limits (issue 25.2): its calls in flight,
 * and the bytes held for it (request bodies kept whole for a retry, answers held back until their
 * end, answers it has not taken yet). One client (one address) cannot hold more than its share of the gateway and of the
 * upstream connections, however many connections and streams it opens. A call past the call
 * limit is answered RESOURCE_EXHAUSTED at once; what a call may hold past the byte limit is up
 * to its caller (`ProxiedCall`).
 */
export class ClientCalls {
  readonly #inFlight = new Map<string, number>();
  readonly #held = new Map<string, number>();
  #heldTotal = 0;

  /**
   * @param limit calls in flight per address
   * @param bytesLimit bytes held per address
   * @param totalBytesLimit bytes held for all addresses together: many addresses (a botnet, an
   *   IPv6 prefix) each within `bytesLimit` still cannot grow the gateway past it
   */
  constructor(
    readonly limit: number,
    readonly bytesLimit = Number.POSITIVE_INFINITY,
    readonly totalBytesLimit = Number.POSITIVE_INFINITY,
  ) {}

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

  /**
   * Counts `bytes` held for `address`; false (not counted) when that would pass the address's
   * byte limit or the gateway's total.
   */
  hold(address: string, bytes: number): boolean {
    const n = this.#held.get(address) ?? 0;
    if (n + bytes > this.bytesLimit || this.#heldTotal + bytes > this.totalBytesLimit) return false;
    this.#held.set(address, n + bytes);
    this.#heldTotal += bytes;
    return true;
  }

  /** No longer holds `bytes` for `address`. */
  unhold(address: string, bytes: number): void {
    if (bytes <= 0) return;
    const had = this.#held.get(address) ?? 0;
    const n = had - bytes;
    this.#heldTotal -= Math.min(had, bytes);
    if (n <= 0) this.#held.delete(address);
    else this.#held.set(address, n);
  }

  /** Bytes held for all addresses now. */
  heldTotal(): number {
    return this.#heldTotal;
  }

  /** Bytes held for `address` now. */
  held(address: string): number {
    return this.#held.get(address) ?? 0;
  }
}
