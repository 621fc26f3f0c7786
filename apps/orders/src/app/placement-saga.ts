import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import type { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { SagaAbort, type SagaDefinition, SagaUnavailable } from "@meshwork/saga";
import type { OrderStore } from "../adapters/db/order-store.js";
import type { PlacementData } from "../domain/order.js";
import type { OrderMetrics } from "./order-metrics.js";

const PLACEMENT = "order-placement";
/** The step that takes the money: its compensation is the refund. */
const CAPTURE = "capture";

/** A refusal by the other service (no stock, declined): the order cannot go on. */
const BUSINESS = new Set([Code.FailedPrecondition, Code.NotFound, Code.InvalidArgument, Code.AlreadyExists]);

/**
 * The other service is unavailable for now (down, restarting, its breaker open here, too slow,
 * overloaded): the step waits, up to the saga's transient budget, instead of cancelling.
 */
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted]);

/**
 * Turns a call's failure into a business abort (with `refused` in front), a transient failure
 * that waits out the budget, or another error that spends the step's attempts.
 */
async function call<T>(upstream: string, refused: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    const e = ConnectError.from(err);
    if (BUSINESS.has(e.code)) throw new SagaAbort(`${refused}: ${e.rawMessage}`);
    const message = `${upstream} unavailable: ${e.rawMessage}`;
    if (TRANSIENT.has(e.code)) throw new SagaUnavailable(message, { cause: e });
    throw new Error(message, { cause: e });
  }
}

/**
 * A compensation: true when it undid something, false when it found nothing to undo in this
 * state (which is done too).
 */
async function undo(work: () => Promise<unknown>, nothingToUndo: ReadonlySet<Code>): Promise<boolean> {
  try {
    await work();
    return true;
  } catch (err) {
    const e = ConnectError.from(err);
    if (!nothingToUndo.has(e.code)) throw e;
    return false;
  }
}

export interface PlacementDeps {
  inventory: Client<typeof InventoryService>;
  payments: Client<typeof PaymentService>;
  orders: OrderStore;
  retry: {
    maxAttempts: number;
    initialDelayMs: number;
    maxDelayMs: number;
    /** How long a step may find an upstream unavailable before the order is cancelled. */
    transientBudgetMs: number;
  };
  stepTimeoutMs: number;
  /** Counts confirmations, cancellations and revenue once the saga's end committed. */
  metrics?: OrderMetrics;
}

/**
 * Order placement: reserve stock -> authorize payment -> capture payment and commit the
 * reservation -> confirm. Every call is keyed by the order id (the reservation id and the
 * payment id), so a repeated step has no second effect. No stock or a declined payment cancels
 * the order at once. An upstream that is unavailable (down, restarting, its breaker open,
 * timing out) only delays a step, with backoff capped at `maxDelayMs` (the breaker's half-open
 * moment is then at most that late), until it has been unavailable for the transient budget
 * since the step's first such failure; then the order is cancelled. Other errors cancel it
 * once the step's attempts are spent. Either way what was done is undone in reverse: refund,
 * void, release; the cancellation says whether the payment was refunded.
 */
export function placementSaga(deps: PlacementDeps): SagaDefinition<PlacementData> {
  const { inventory, payments, orders } = deps;
  return {
    type: PLACEMENT,
    steps: [
      {
        name: "reserve",
        action: ({ sagaId, data, signal }) =>
          call("inventory", "out of stock", () =>
            inventory.reserveStock(
              {
                reservationId: sagaId,
                items: data.items.map((i) => ({ productId: i.productId, quantity: BigInt(i.quantity) })),
              },
              { signal },
            ),
          ).then(() => {}),
        compensate: ({ sagaId, signal }) =>
          undo(() => inventory.releaseReservation({ reservationId: sagaId }, { signal }), new Set()),
      },
      {
        name: "authorize",
        action: ({ sagaId, data, signal }) =>
          call("payments", "payment declined", () =>
            payments.authorizePayment(
              {
                paymentId: sagaId,
                userId: data.userId,
                amount: { amountMinor: BigInt(data.totalMinor), currency: data.currency },
              },
              { signal },
            ),
          ).then(() => {}),
        // Voiding a declined or never-authorized payment is a no-op on the payments side.
        compensate: ({ sagaId, signal }) =>
          undo(() => payments.voidPayment({ paymentId: sagaId }, { signal }), new Set()),
      },
      {
        name: CAPTURE,
        async action({ sagaId, signal }) {
          await call("payments", "payment refused", () =>
            payments.capturePayment({ paymentId: sagaId }, { signal }),
          );
          await call("inventory", "stock lost", () =>
            inventory.commitReservation({ reservationId: sagaId }, { signal }),
          );
        },
        // Not captured (still authorized, or voided): nothing to refund.
        compensate: ({ sagaId, signal }) =>
          undo(
            () => payments.refundPayment({ paymentId: sagaId }, { signal }),
            new Set([Code.FailedPrecondition]),
          ),
      },
    ],
    // Also sets the order's status for the steps done so far: the next step's check runs in the
    // transaction that records a step as done, so no `onStepDone` (one statement per step fewer).
    beforeStep: (tx, id, _data, step) => orders.beforeStep(tx, id, step),
    onCompleted: (tx, id, data) => orders.confirmed(tx, id, data),
    onCompensated: (tx, id, data, reason, undone) =>
      orders.cancelled(tx, id, data, reason, { paymentRefunded: undone.includes(CAPTURE) }),
    onEnded(_id, data, outcome, reason) {
      if (outcome === "completed") deps.metrics?.confirmed(data);
      else deps.metrics?.cancelled(data, reason ?? "");
    },
    ...deps.retry,
    stepTimeoutMs: deps.stepTimeoutMs,
  };
}
