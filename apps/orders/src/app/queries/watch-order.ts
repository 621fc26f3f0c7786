import { type Order, RANK, TERMINAL } from "../../domain/order.js";
import type { OrderRepository, StatusWatch } from "../../domain/ports.js";
import type { WatchLimit } from "../watch-limit.js";

export interface WatchOrderDeps {
  orders: OrderRepository;
  watch: StatusWatch;
  /** Watches per user: past it, TooManyWatchesError before anything is read or subscribed. */
  limit: WatchLimit;
}

/**
 * The user's order now, then again at each status it moves on to, until it is confirmed or
 * cancelled (or the signal aborts); at most `deps.limit.perUser` at once per user. Statuses only move forward; older notifications are skipped.
 */
export async function* watchOrder(
  deps: WatchOrderDeps,
  input: { userId: string; orderId: string; signal?: AbortSignal },
): AsyncGenerator<Order> {
  deps.limit.acquire(input.userId);
  // Subscribe first, then read: a change between the two is in the subscription.
  const changes = deps.watch.subscribe(input.orderId, input.signal);
  try {
    let current = await deps.orders.get(input.userId, input.orderId);
    yield current;
    if (TERMINAL.has(current.status)) return;
    // Each status the order passes through, in commit order; older ones are skipped.
    for await (const change of changes) {
      // After a lost notification the order is read again: it may have moved on meanwhile.
      const status =
        change === "resync" ? ((await deps.orders.byId(input.orderId))?.status ?? current.status) : change;
      if (RANK[status] <= RANK[current.status]) continue;
      current = TERMINAL.has(status)
        ? ((await deps.orders.byId(input.orderId)) ?? { ...current, status })
        : { ...current, status };
      yield current;
      if (TERMINAL.has(current.status)) return;
    }
  } finally {
    changes.close();
    deps.limit.release(input.userId);
  }
}
