/**
 * What a chaos run leaves behind, read back after quiescence, and the invariants beyond those of
 * the orders checker (`checkConsistency`: stock conserved, confirmed orders captured for their
 * total with a committed reservation, cancelled ones with nothing captured, authorized or held,
 * payments agreeing with the provider's ledger, every saga finished).
 */
export interface Observed {
  /** Every order the orders service holds. */
  orders: ReadonlyArray<{ id: string; userId: string; status: "confirmed" | "cancelled" | "open" }>;
  /** The orders the clients were answered for: idempotency key -> order id. */
  acknowledged: ReadonlyMap<string, string>;
  /** Idempotency keys each client user sent (answered or not). */
  keysSent: ReadonlyMap<string, number>;
  /** The client users, each registered once. */
  users: readonly string[];
  /** Every notification row. */
  notifications: ReadonlyArray<{ userId: string; kind: string; body: string; eventId: string }>;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

/**
 * The event-side invariants, one line per violation:
 * - every acknowledged order exists (an answered PlaceOrder is never lost);
 * - no user has more orders than idempotency keys it sent (a retry never places a second order);
 * - every finished order's event had its effect exactly once: one notification, of its outcome's
 *   kind (none: an acknowledged event was lost; two: a side effect ran twice);
 * - every client user got exactly one welcome (UserRegistered, once);
 * - no notification names an order that does not exist.
 */
export function eventViolations(o: Observed): string[] {
  const out: string[] = [];
  const byId = new Map(o.orders.map((x) => [x.id, x]));
  for (const [key, id] of o.acknowledged) {
    if (!byId.has(id)) out.push(`order ${id} (key ${key}) was acknowledged to its client but does not exist`);
  }
  const perUser = new Map<string, number>();
  for (const x of o.orders) perUser.set(x.userId, (perUser.get(x.userId) ?? 0) + 1);
  for (const [user, n] of perUser) {
    const sent = o.keysSent.get(user) ?? 0;
    if (n > sent) out.push(`user ${user} has ${n} orders, but sent ${sent} idempotency keys`);
  }
  const aboutOrder = new Map<string, string[]>();
  const welcomes = new Map<string, number>();
  for (const n of o.notifications) {
    if (n.kind === "user.registered") {
      welcomes.set(n.userId, (welcomes.get(n.userId) ?? 0) + 1);
      continue;
    }
    if (!n.kind.startsWith("order.")) continue;
    const id = UUID.exec(n.body)?.[0];
    if (!id) {
      out.push(`notification ${n.eventId} (${n.kind}) names no order`);
      continue;
    }
    aboutOrder.set(id, [...(aboutOrder.get(id) ?? []), n.kind]);
  }
  for (const x of o.orders) {
    if (x.status === "open") continue; // the orders checker names unfinished sagas
    const kinds = aboutOrder.get(x.id) ?? [];
    const want = `order.${x.status}`;
    if (kinds.length === 0) out.push(`order ${x.id} is ${x.status}, but its user was never notified`);
    else if (kinds.length > 1) out.push(`order ${x.id}: ${kinds.length} notifications (${kinds.join(", ")})`);
    else if (kinds[0] !== want)
      out.push(`order ${x.id} is ${x.status}, but the notification says ${kinds[0]}`);
  }
  for (const id of aboutOrder.keys()) {
    if (!byId.has(id)) out.push(`a notification names order ${id}, which does not exist`);
  }
  for (const u of o.users) {
    const n = welcomes.get(u) ?? 0;
    if (n !== 1) out.push(`user ${u} got ${n} welcome notifications, not 1`);
  }
  return out;
}
