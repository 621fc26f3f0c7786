/**
 * The comparison rules of the orders routes (GET /api/orders/{id}, GET /api/users/{id}/orders),
 * where the two sides differ by design rather than by defect:
 *
 * - **Status.** The monolith takes the stock and confirms an order in the request's own
 *   transaction: its orders are CONFIRMED at once. The mesh answers PENDING and its saga moves
 *   the order through STOCK_RESERVED and PAYMENT_AUTHORIZED to CONFIRMED. The monolith's copy of
 *   a mesh order (the reverse sync) is PENDING until OrderConfirmed is applied. So a status on
 *   the way to CONFIRMED ("in flight") on one side matches CONFIRMED or in flight on the other.
 *   CANCELLED matches only CANCELLED: a cancelled order against a confirmed or running one is a
 *   real difference (or the reverse sync's lag, which `strangler status` shows as sync lag).
 * - **Cancel reason.** The monolith has no such column (its orders never end cancelled): its
 *   empty `cancel_reason` matches the mesh's reason.
 * - **Item order.** The monolith lists an order's items by product id, the mesh in the order
 *   they were placed: both are compared sorted by product id.
 *
 * Ids and totals are not mapped: an order both sides hold is a mesh order the reverse sync copied
 * under the mesh's id, with the prices it was placed at.
 */
const IN_FLIGHT = new Set([
  "ORDER_STATUS_PENDING",
  "ORDER_STATUS_STOCK_RESERVED",
  "ORDER_STATUS_PAYMENT_AUTHORIZED",
]);
const CONFIRMED = "ORDER_STATUS_CONFIRMED";

function onTheWay(status: string): boolean {
  return IN_FLIGHT.has(status) || status === CONFIRMED;
}

/** Whether two differing values of a field are the same by the orders routes' rules. */
export function sameOrderStatus(path: readonly string[], legacy: unknown, next: unknown): boolean {
  if (path.at(-1) === "cancel_reason") return legacy === "" && typeof next === "string";
  if (path.at(-1) !== "status" || typeof legacy !== "string" || typeof next !== "string") return false;
  if (!legacy.startsWith("ORDER_STATUS_") || !next.startsWith("ORDER_STATUS_")) return false;
  return (IN_FLIGHT.has(legacy) || IN_FLIGHT.has(next)) && onTheWay(legacy) && onTheWay(next);
}

function productIdOf(item: unknown): string | undefined {
  if (item === null || typeof item !== "object" || Array.isArray(item)) return undefined;
  const id = (item as Record<string, unknown>).product_id;
  return typeof id === "string" ? id : undefined;
}

/** An order's `items` sorted by product id (a copy); any other array as it is. */
export function orderedItems(path: readonly string[], list: readonly unknown[]): readonly unknown[] {
  if (path.at(-1) !== "items" || !list.every((i) => productIdOf(i) !== undefined)) return list;
  return [...list].sort((a, b) => (productIdOf(a)! < productIdOf(b)! ? -1 : 1));
}
