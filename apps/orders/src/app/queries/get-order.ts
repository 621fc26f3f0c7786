import type { Order } from "../../domain/order.js";
import type { OrderRepository } from "../../domain/ports.js";

/** One of the user's orders (another user's is not found). */
export function getOrder(
  deps: { orders: OrderRepository },
  input: { userId: string; orderId: string },
): Promise<Order> {
  return deps.orders.get(input.userId, input.orderId);
}
