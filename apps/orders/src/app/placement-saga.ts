import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import type { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { SagaAbort, type SagaDefinition } from "@meshwork/saga";
import type { OrderStore } from "../adapters/db/order-store.js";
import type { PlacementData } from "../domain/order.js";

const PLACEMENT = "order-placement";

/** A refusal by the other service (no stock, declined): the order cannot go on. */
const BUSINESS = new Set([Code.FailedPrecondition, Code.NotFound, Code.InvalidArgument, Code.AlreadyExists]);

/** Turns a call's failure into a business abort (with `refused` in front) or a retryable error. */
async function call<T>(upstream: string, refused: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    const e = ConnectError.from(err);
    if (BUSINESS.has(e.code)) throw new SagaAbort(`${refused}: ${e.rawMessage}`);
    throw new Error(`${upstream} unavailable: ${e.rawMessage}`, { cause: e });
  }
}

/** A compensation that finds nothing to undo in this state is done. */
async function undo(work: () => Promise<unknown>, nothingToUndo: ReadonlySet<Code>): Promise<void> {
  try {
    await work();
  } catch (err) {
    const e = ConnectError.from(err);
    if (!nothingToUndo.has(e.code)) throw e;
  }
}

export interface PlacementDeps {
  inventory: Client<typeof InventoryService>;
  payments: Client<typeof PaymentService>;
  orders: OrderStore;
  retry: { maxAttempts: number; initialDelayMs: number; maxDelayMs: number };
  stepTimeoutMs: number;
}

/**
 * Order placement: reserve stock -> authorize payment -> capture payment and commit the
 * reservation -> confirm. Every call is keyed by the order id (the reservation id and the
 * payment id), so a repeated step has no second effect. No stock or a declined payment cancels
 * the order at once; a step that keeps failing (payments down, its breaker open) cancels it
 * once its attempts are spent. Either way what was done is undone in reverse: refund, void,
 * release.
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
        name: "capture",
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
    beforeStep: (tx, id, _data, step) => orders.beforeStep(tx, id, step),
    async onStepDone(tx, id, _data, step) {
      if (step === "reserve") await orders.stepDone(tx, id, "stock_reserved");
      if (step === "authorize") await orders.stepDone(tx, id, "payment_authorized");
    },
    onCompleted: (tx, id, data) => orders.confirmed(tx, id, data),
    onCompensated: (tx, id, data, reason) => orders.cancelled(tx, id, data, reason),
    ...deps.retry,
    stepTimeoutMs: deps.stepTimeoutMs,
  };
}
