import postgres from "postgres";

export interface CheckTargets {
  /** Database URLs of the three services (an operator's view: each service owns its own). */
  orders: string;
  inventory: string;
  payments: string;
}

/**
 * Checks, after any run, that the services agree: stock is conserved (each product's units on
 * hand are what it received minus what committed reservations took, and its reserved units are
 * what held reservations hold), every confirmed order has a captured payment equal to its total
 * and a committed reservation of its items, every cancelled order has no captured or authorized
 * payment and no held reservation, and no order is left unfinished. Returns one line per
 * violation (none: consistent).
 */
export async function checkConsistency(targets: CheckTargets): Promise<string[]> {
  const open = (url: string) => postgres(url, { max: 1, onnotice: () => {} });
  const [o, i, p] = [open(targets.orders), open(targets.inventory), open(targets.payments)];
  const violations: string[] = [];
  try {
    const products = await i<{ id: string; on_hand: string; reserved: string; received: string }[]>`
      select id, on_hand, reserved, received from products`;
    const moved = await i<{ product_id: string; state: string; qty: string }[]>`
      select ri.product_id, r.state, sum(ri.quantity) as qty
      from reservation_items ri join reservations r on r.id = ri.reservation_id
      group by ri.product_id, r.state`;
    const sumOf = (product: string, state: string) =>
      Number(moved.find((m) => m.product_id === product && m.state === state)?.qty ?? 0);
    for (const pr of products) {
      const committed = sumOf(pr.id, "committed");
      const held = sumOf(pr.id, "held");
      if (Number(pr.on_hand) !== Number(pr.received) - committed) {
        violations.push(
          `product ${pr.id}: on hand ${pr.on_hand}, but received ${pr.received} - committed ${committed} = ${Number(pr.received) - committed}`,
        );
      }
      if (Number(pr.reserved) !== held) {
        violations.push(`product ${pr.id}: reserved ${pr.reserved}, but held reservations hold ${held}`);
      }
    }
    const reservations = new Map(
      (await i<{ id: string; state: string }[]>`select id, state from reservations`).map((r) => [
        r.id,
        r.state,
      ]),
    );
    const payments = new Map(
      (
        await p<{ id: string; state: string; amount_minor: string | null; currency: string | null }[]>`
          select id, state, amount_minor, currency from payments`
      ).map((r) => [r.id, r]),
    );
    const orders = await o<{ id: string; status: string; total_minor: string; currency: string }[]>`
      select id, status, total_minor, currency from orders`;
    for (const order of orders) {
      const pay = payments.get(order.id);
      const res = reservations.get(order.id);
      if (order.status === "confirmed") {
        if (pay?.state !== "captured")
          violations.push(`order ${order.id} confirmed, but its payment is ${pay?.state ?? "missing"}`);
        else if (Number(pay.amount_minor) !== Number(order.total_minor) || pay.currency !== order.currency)
          violations.push(
            `order ${order.id} confirmed for ${order.total_minor} ${order.currency}, but captured ${pay.amount_minor} ${pay.currency}`,
          );
        if (res !== "committed")
          violations.push(`order ${order.id} confirmed, but its reservation is ${res ?? "missing"}`);
      } else if (order.status === "cancelled") {
        if (pay && (pay.state === "captured" || pay.state === "authorized"))
          violations.push(`order ${order.id} cancelled, but its payment is ${pay.state}`);
        if (res === "held" || res === "committed")
          violations.push(`order ${order.id} cancelled, but its reservation is ${res}`);
      } else {
        violations.push(`order ${order.id} is still ${order.status}`);
      }
    }
  } finally {
    await Promise.all([o.end(), i.end(), p.end()]);
  }
  return violations;
}
