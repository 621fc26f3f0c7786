import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { type InventoryService, ReservationState } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { type OrderService, OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import {
  type Payment,
  type PaymentService,
  PaymentState,
  type ProviderLedgerEntry,
} from "@meshwork/contracts/meshwork/payments/v1/payments";

export interface CheckClients {
  orders: Client<typeof OrderService>;
  inventory: Client<typeof InventoryService>;
  payments: Client<typeof PaymentService>;
  /** Call options that carry an admin's token (through the gateway), and a deadline per call. */
  admin: { headers: Record<string, string>; timeoutMs?: number };
}

/**
 * Checks, after any run, that the services agree, through their APIs (so it works on any mesh,
 * embedded or deployed): stock is conserved (each product's units on hand are what it received
 * minus what committed reservations took, its reserved units what held reservations hold), every
 * confirmed order has a captured payment equal to its total and a committed reservation, every
 * cancelled order has no captured or authorized payment and no held or committed reservation,
 * every payment is where the payment provider's own ledger says it is (same state, same amount),
 * and no order is left unfinished. Returns one line per violation (none: consistent).
 */
export async function checkConsistency(c: CheckClients): Promise<string[]> {
  const violations: string[] = [];
  for (const a of (await c.inventory.auditStock({}, c.admin)).products) {
    if (a.onHand !== a.received - a.committed) {
      violations.push(
        `product ${a.productId}: on hand ${a.onHand}, but received ${a.received} - committed ${a.committed} = ${a.received - a.committed}`,
      );
    }
    if (a.reserved !== a.held)
      violations.push(`product ${a.productId}: reserved ${a.reserved}, but reservations hold ${a.held}`);
  }
  const orNotFound = async <T>(p: Promise<T>): Promise<T | undefined> =>
    p.catch((err: unknown) => {
      if (ConnectError.from(err).code === Code.NotFound) return undefined;
      throw err;
    });
  let pageToken = "";
  do {
    const page = await c.orders.listOrders({ allUsers: true, pageSize: 100, pageToken }, c.admin);
    for (const order of page.orders) {
      const [pay, res, ledger] = await Promise.all([
        orNotFound(c.payments.getPayment({ paymentId: order.id }, c.admin)).then((r) => r?.payment),
        orNotFound(c.inventory.getReservation({ reservationId: order.id }, c.admin)).then(
          (r) => r?.reservation,
        ),
        c.payments.getProviderLedger({ paymentId: order.id }, c.admin).then((r) => r.entries),
      ]);
      // An order copied from the legacy monolith (strangler fig, legacy -> orders CDC) was
      // placed there: no saga here, no payment or reservation in the mesh. Nothing to check.
      if (!pay && !res && ledger.length === 0 && (await importedWithoutSaga(c, order.id))) continue;
      const books = compareWithProvider(pay, ledger);
      if (books) violations.push(`order ${order.id}: ${books}`);
      const payState = pay ? PaymentState[pay.state].toLowerCase() : "missing";
      const resState = res ? ReservationState[res.state].toLowerCase() : "missing";
      if (order.status === OrderStatus.CONFIRMED) {
        if (pay?.state !== PaymentState.CAPTURED) {
          violations.push(`order ${order.id} confirmed, but its payment is ${payState}`);
        } else if (
          pay.amount?.amountMinor !== order.total?.amountMinor ||
          pay.amount?.currency !== order.total?.currency
        ) {
          violations.push(
            `order ${order.id} confirmed for ${order.total?.amountMinor} ${order.total?.currency}, but ${pay.amount?.amountMinor} ${pay.amount?.currency} was captured`,
          );
        }
        if (res?.state !== ReservationState.COMMITTED) {
          violations.push(`order ${order.id} confirmed, but its reservation is ${resState}`);
        }
      } else if (order.status === OrderStatus.CANCELLED) {
        if (pay?.state === PaymentState.CAPTURED || pay?.state === PaymentState.AUTHORIZED) {
          violations.push(`order ${order.id} cancelled, but its payment is ${payState}`);
        }
        if (res?.state === ReservationState.HELD || res?.state === ReservationState.COMMITTED) {
          violations.push(`order ${order.id} cancelled, but its reservation is ${resState}`);
        }
      } else {
        violations.push(`order ${order.id} is still ${OrderStatus[order.status].toLowerCase()}`);
      }
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  return violations;
}

/** Whether orders holds no saga for this order (a copy of a legacy order, never placed here). */
async function importedWithoutSaga(c: CheckClients, orderId: string): Promise<boolean> {
  try {
    await c.orders.getSaga({ id: orderId }, c.admin);
    return false;
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return true;
    throw err;
  }
}

/** Where the provider's ledger leaves a payment: its last accepted operation decides. */
function providerState(ledger: readonly ProviderLedgerEntry[]): string {
  const did = new Map(ledger.map((e) => [e.operation, e]));
  if (did.has("refund")) return "refunded";
  if (did.has("capture")) return "captured";
  if (did.has("void")) return "voided";
  const auth = did.get("authorize");
  if (auth) return auth.declineReason ? "declined" : "authorized";
  return "missing";
}

/**
 * Our payments table against the provider's books: the same state (a void of a payment the
 * provider never saw is a tombstone on our side only) and, for money that moved, the same amount.
 */
function compareWithProvider(
  pay: Payment | undefined,
  ledger: readonly ProviderLedgerEntry[],
): string | undefined {
  const ours = pay ? PaymentState[pay.state].toLowerCase() : "missing";
  const theirs = providerState(ledger);
  if (ours === "voided" && theirs === "missing") return undefined;
  if (ours !== theirs) return `payments says ${ours}, but the provider's ledger says ${theirs}`;
  const authorized = ledger.find((e) => e.operation === "authorize");
  if (pay && authorized && pay.amount && pay.amount.amountMinor !== authorized.amountMinor) {
    return `payments says ${pay.amount.amountMinor}, but the provider authorized ${authorized.amountMinor}`;
  }
  return undefined;
}
