import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type { Sql, TransactionSql } from "postgres";
import { invalid, notFound, precondition } from "../errors.js";
import { type CallerOf, mayRead, pageOf, tokenOf, UUID_PATTERN, uuidParam } from "../http.js";
import { type OrderItemRow, type OrderRow, orderJson, type ProductRow } from "../shapes.js";

const orderBody = {
  type: "object",
  required: ["idempotency_key", "items"],
  properties: {
    idempotency_key: { type: "string", minLength: 8, maxLength: 128 },
    items: {
      type: "array",
      minItems: 1,
      maxItems: 50,
      items: {
        type: "object",
        required: ["product_id", "quantity"],
        properties: {
          product_id: { type: "string", pattern: UUID_PATTERN },
          quantity: { type: "integer", minimum: 1, maximum: 1000 },
        },
      },
    },
  },
} as const;

interface PlaceOrder {
  userId: string;
  idempotencyKey: string;
  items: { product_id: string; quantity: number }[];
}

async function loadOrder(sql: Sql, id: string): Promise<ReturnType<typeof orderJson> | undefined> {
  const [order] = await sql<OrderRow[]>`
    SELECT id, user_id, status, total_minor, currency, created_at, updated_at FROM orders WHERE id = ${id}`;
  if (!order) return undefined;
  const items = await sql<OrderItemRow[]>`
    SELECT product_id, quantity, unit_price_minor FROM order_items WHERE order_id = ${id} ORDER BY product_id`;
  return orderJson(order, items);
}

/**
 * Places the order in one transaction (stock locked, decremented, order confirmed at once). The
 * product rows are locked with the stock, in id order: the CDC trigger locks a product before it
 * captures, so taking stock first and the product later could deadlock with a writer of both.
 */
async function placeOrder(tx: TransactionSql, cmd: PlaceOrder): Promise<string> {
  const ids = cmd.items.map((i) => i.product_id.toLowerCase());
  const [again] = await tx<{ id: string }[]>`
    SELECT id FROM orders WHERE user_id = ${cmd.userId} AND idempotency_key = ${cmd.idempotencyKey}`;
  if (again) return again.id;
  const stock = await tx<(ProductRow & { product_id: string })[]>`
    SELECT p.id, p.sku, p.price_minor, p.currency, s.on_hand FROM products p
    JOIN stock s ON s.product_id = p.id WHERE p.id IN ${tx(ids)} ORDER BY p.id FOR NO KEY UPDATE OF p, s`;
  const byId = new Map(stock.map((s) => [s.id, s]));
  let total = 0;
  let currency = "";
  for (const item of cmd.items) {
    const p = byId.get(item.product_id.toLowerCase());
    if (!p) throw notFound(`product ${item.product_id} not found`);
    if (Number(p.on_hand) < item.quantity) throw precondition(`out of stock: ${p.sku}`);
    if (currency && currency !== p.currency) throw precondition("items: one currency per order");
    currency = p.currency;
    total += Number(p.price_minor) * item.quantity;
  }
  const orderId = randomUUID();
  await tx`INSERT INTO orders (id, user_id, idempotency_key, status, total_minor, currency)
           VALUES (${orderId}, ${cmd.userId}, ${cmd.idempotencyKey}, 'ORDER_STATUS_CONFIRMED', ${total}, ${currency})`;
  for (const item of cmd.items) {
    const p = byId.get(item.product_id.toLowerCase())!;
    await tx`UPDATE stock SET on_hand = on_hand - ${item.quantity}, updated_at = now() WHERE product_id = ${p.id}`;
    await tx`INSERT INTO order_items (order_id, product_id, quantity, unit_price_minor)
             VALUES (${orderId}, ${p.id}, ${item.quantity}, ${p.price_minor})`;
  }
  return orderId;
}

/** `POST /api/orders`, `GET /api/orders/{id}`, `GET /api/users/{id}/orders`. */
export function registerOrderRoutes(app: FastifyInstance, sql: Sql, caller: CallerOf): void {
  app.post("/api/orders", { schema: { body: orderBody } }, async (req) => {
    const me = await caller(req);
    const body = req.body as { idempotency_key: string; items: { product_id: string; quantity: number }[] };
    const ids = body.items.map((i) => i.product_id.toLowerCase());
    if (new Set(ids).size !== ids.length) throw invalid("items: each product at most once");
    const cmd = { userId: me.id, idempotencyKey: body.idempotency_key, items: body.items };
    const id = await sql.begin((tx) => placeOrder(tx, cmd));
    const order = await loadOrder(sql, id);
    if (!order) throw notFound(`order ${id} not found`);
    return order;
  });

  app.get<{ Params: { id: string } }>("/api/orders/:id", async (req) => {
    const id = uuidParam(req.params.id);
    const me = await caller(req);
    const order = await loadOrder(sql, id);
    if (!order) throw notFound(`order ${id} not found`);
    mayRead(me, order.user_id);
    return order;
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, string | undefined> }>(
    "/api/users/:id/orders",
    async (req) => {
      const userId = uuidParam(req.params.id);
      mayRead(await caller(req), userId);
      const { size, offset } = pageOf(req.query);
      const rows = await sql<{ id: string }[]>`
        SELECT id FROM orders WHERE user_id = ${userId} ORDER BY created_at DESC, id LIMIT ${size + 1} OFFSET ${offset}`;
      const orders = [];
      for (const r of rows.slice(0, size)) {
        const o = await loadOrder(sql, r.id);
        if (o) orders.push(o);
      }
      return { orders, next_page_token: rows.length > size ? tokenOf(offset + size) : "" };
    },
  );
}
