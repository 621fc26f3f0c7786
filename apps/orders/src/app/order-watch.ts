import type { OrderStatus } from "../domain/order.js";

/**
 * What a watcher reads: each status the order passed through, or `resync` when notifications
 * may have been lost (the LISTEN connection was re-established) and the order must be re-read.
 */
export type StatusChange = OrderStatus | "resync";

/** The changes one watcher has not read yet, as an async iterable. */
export interface StatusFeed extends AsyncIterable<StatusChange> {
  close(): void;
}

/**
 * Fans the database's status notifications (`<order id>:<status>`, one `LISTEN` per process)
 * out to the WatchOrder streams of this process, each with its own queue, so a slow reader
 * misses nothing and a change committed by another instance of the service is seen too.
 */
export class OrderWatch {
  readonly #watchers = new Map<string, Set<(s: StatusChange) => void>>();

  /** Feed it every notification payload. */
  deliver(payload: string): void {
    const at = payload.lastIndexOf(":");
    const id = payload.slice(0, at);
    const status = payload.slice(at + 1) as OrderStatus;
    for (const push of this.#watchers.get(id) ?? []) push(status);
  }

  /** After the LISTEN was re-established: every watcher re-reads its order. */
  resync(): void {
    for (const set of this.#watchers.values()) for (const push of set) push("resync");
  }

  subscribe(orderId: string, signal?: AbortSignal): StatusFeed {
    const queue: StatusChange[] = [];
    let waiting: ((r: IteratorResult<StatusChange>) => void) | undefined;
    let closed = false;
    const push = (s: StatusChange) => {
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        w({ value: s, done: false });
      } else queue.push(s);
    };
    let set = this.#watchers.get(orderId);
    if (!set) {
      set = new Set();
      this.#watchers.set(orderId, set);
    }
    set.add(push);
    const close = () => {
      if (closed) return;
      closed = true;
      set?.delete(push);
      if (set?.size === 0) this.#watchers.delete(orderId);
      waiting?.({ value: undefined, done: true });
      waiting = undefined;
    };
    signal?.addEventListener("abort", close, { once: true });
    return {
      close,
      [Symbol.asyncIterator]: () => ({
        next: () => {
          const s = queue.shift();
          if (s !== undefined) return Promise.resolve({ value: s, done: false });
          if (closed) return Promise.resolve({ value: undefined, done: true });
          return new Promise<IteratorResult<StatusChange>>((resolve) => {
            waiting = resolve;
          });
        },
        return: () => {
          close();
          return Promise.resolve({ value: undefined, done: true });
        },
      }),
    };
  }
}
