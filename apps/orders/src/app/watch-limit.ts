import { TooManyWatchesError } from "../domain/order.js";

/** Default of WATCH_MAX_PER_USER: WatchOrder streams one user may hold open at once. */
export const DEFAULT_WATCHES_PER_USER = 16;

/**
 * WatchOrder streams open per user, against a limit: each holds a subscription, a queue and an
 * HTTP/2 stream for as long as the client likes, so one user opening thousands (5,000 added
 * ~400 MB, issue 25.2) must be refused, not served.
 */
export class WatchLimit {
  readonly #open = new Map<string, number>();

  constructor(readonly perUser: number = DEFAULT_WATCHES_PER_USER) {}

  /** Counts a watch of `userId`; TooManyWatchesError when the user already holds the limit. */
  acquire(userId: string): void {
    const n = this.#open.get(userId) ?? 0;
    if (n >= this.perUser) throw new TooManyWatchesError(this.perUser);
    this.#open.set(userId, n + 1);
  }

  release(userId: string): void {
    const n = (this.#open.get(userId) ?? 1) - 1;
    if (n <= 0) this.#open.delete(userId);
    else this.#open.set(userId, n);
  }

  /** Watches `userId` holds open now. */
  count(userId: string): number {
    return this.#open.get(userId) ?? 0;
  }
}
