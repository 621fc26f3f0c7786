import type { OrderStatus } from "../domain/order.js";

/** The statuses one watcher has not read yet, as an async iterable. */
export interface StatusFeed extends AsyncIterable<OrderStatus> {
  close(): void;
}

/**
 * Fans the database's status notifications (`<order id>:<status>`, one `LISTEN` per process)
 * out to the WatchOrder streams of this process, each with its own queue, so a slow reader
 * misses nothing and a change committed by another instance of the service is seen too.
 */
export class OrderWatch {
  readonly #watchers = new Map<string, Set<(s: OrderStatus) => void>>();

  /** Feed it every notification payload. */
  deliver(payload: string): void {
    const at = payload.lastIndexOf(":");
    const id = payload.slice(0, at);
    const status = payload.slice(at + 1) as OrderStatus;
    for (const push of this.#watchers.get(id) ?? []) push(status);
  }

  subscribe(orderId: string, signal?: AbortSignal): StatusFeed {
    const queue: OrderStatus[] = [];
    let waiting: ((r: IteratorResult<OrderStatus>) => void) | undefined;
    let closed = false;
    const push = (s: OrderStatus) => {
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
          return new Promise<IteratorResult<OrderStatus>>((resolve) => {
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
