import type { Order } from "../../domain/order.js";
import type { OrderRepository } from "../../domain/ports.js";

export interface CancelOrderDeps {
  orders: OrderRepository;
  /** Wakes the saga executor, so the cancellation takes effect at once. */
  kick: () => void;
}

/**
 * Asks for the user's order to be cancelled: its saga stops before its next step and undoes what
 * was done. Refused (OrderStateError) once the payment is being captured or the order is confirmed.
 */
export async function cancelOrder(
  deps: CancelOrderDeps,
  input: { userId: string; orderId: string },
): Promise<Order> {
  const order = await deps.orders.requestCancel(input.userId, input.orderId);
  deps.kick();
  return order;
}
