import { randomBytes, randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { jwtVerify, SignJWT } from "jose";
import type { Sql } from "postgres";
import { denied, exists, invalid, LegacyError, notFound, precondition, unauthenticated } from "./errors.js";
import { hashPassword, verifyPassword } from "./passwords.js";
import {
  type OrderItemRow,
  type OrderRow,
  orderJson,
  type ProductRow,
  productJson,
  type UserRow,
  userJson,
} from "./shapes.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TOKEN_LIFETIME_S = 3600;

export interface LegacyAppOptions {
  sql: Sql;
  /** HS256 secret of the session tokens; default: random per process. */
  tokenSecret?: string;
  logLevel?: string;
}

interface Caller {
  id: string;
  roles: string[];
}

const registerBody = {
  type: "object",
  required: ["email", "password", "display_name"],
  properties: {
    email: { type: "string", maxLength: 254, pattern: "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$" },
    password: { type: "string", minLength: 8, maxLength: 128 },
    display_name: { type: "string", minLength: 1, maxLength: 100 },
  },
} as const;

const loginBody = {
  type: "object",
  required: ["email", "password"],
  properties: { email: { type: "string", maxLength: 254 }, password: { type: "string", maxLength: 128 } },
} as const;

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
          product_id: { type: "string", pattern: UUID.source },
          quantity: { type: "integer", minimum: 1, maximum: 1000 },
        },
      },
    },
  },
} as const;

function uuidParam(value: string, name = "id"): string {
  if (!UUID.test(value)) throw invalid(`${name}: value must be a valid UUID`);
  return value.toLowerCase();
}

function pageOf(query: Record<string, string | undefined>): { size: number; offset: number } {
  const rawSize = query.page_size ?? "0";
  if (!/^\d{1,9}$/.test(rawSize)) throw invalid("page_size: value must be a non-negative integer");
  const size = Math.min(Number(rawSize) || 20, 100);
  let offset = 0;
  if (query.page_token) {
    const m = /^o(\d{1,9})$/.exec(Buffer.from(query.page_token, "base64url").toString());
    if (!m) throw invalid("page_token: not a token this API issued");
    offset = Number(m[1]);
  }
  return { size, offset };
}

const tokenOf = (offset: number) => Buffer.from(`o${offset}`).toString("base64url");

/**
 * The monolith: a Fastify app over one Postgres database. Each handler reads and writes the
 * tables of every "domain" freely, in one transaction where it must, as monoliths do.
 */
export function createLegacyApp(options: LegacyAppOptions): FastifyInstance {
  const { sql } = options;
  const secret = new TextEncoder().encode(options.tokenSecret ?? randomBytes(32).toString("base64url"));
  const app = Fastify({
    logger: { level: options.logLevel ?? "info", base: { service: "legacy" } },
    bodyLimit: 1 << 20,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, _req, reply) => {
    if (err instanceof LegacyError) {
      return reply.code(err.status).send({ error: err.code, message: err.message });
    }
    if (err.validation) {
      return reply
        .code(400)
        .send({ error: "invalid_argument", message: err.message.replace(/^body\/?/, "") });
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      const code = err.statusCode === 413 ? "resource_exhausted" : "invalid_argument";
      return reply.code(err.statusCode).send({ error: code, message: err.message });
    }
    app.log.error({ err }, "request failed");
    return reply.code(500).send({ error: "internal", message: "internal error" });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: "not_found", message: `no route ${req.method} ${req.url.split("?")[0]}` }),
  );

  async function caller(req: FastifyRequest): Promise<Caller> {
    const header = req.headers.authorization;
    if (!header?.startsWith("Bearer ")) throw unauthenticated("a bearer token is required");
    try {
      const { payload } = await jwtVerify(header.slice(7), secret, {
        issuer: "legacy",
        algorithms: ["HS256"],
      });
      return {
        id: String(payload.sub),
        roles: Array.isArray(payload.roles) ? payload.roles.map(String) : [],
      };
    } catch {
      throw unauthenticated("the token is invalid or expired");
    }
  }

  function mayRead(c: Caller, ownerId: string): void {
    if (c.id !== ownerId && !c.roles.includes("admin")) throw denied("not your data");
  }

  app.get("/healthz", async () => ({ status: "SERVING" }));

  app.post("/api/users", { schema: { body: registerBody } }, async (req, reply) => {
    const body = req.body as { email: string; password: string; display_name: string };
    const email = body.email.trim().toLowerCase();
    const hash = await hashPassword(body.password);
    const rows = await sql<UserRow[]>`
      INSERT INTO users (id, email, display_name, password_hash)
      VALUES (${randomUUID()}, ${email}, ${body.display_name}, ${hash})
      ON CONFLICT (email) DO NOTHING
      RETURNING id, email, display_name, roles, created_at`;
    if (!rows[0]) throw exists(`a user with email ${email} already exists`);
    return reply.code(200).send(userJson(rows[0]));
  });

  app.post("/api/login", { schema: { body: loginBody } }, async (req) => {
    const body = req.body as { email: string; password: string };
    const [row] = await sql<(UserRow & { password_hash: string })[]>`
      SELECT id, email, display_name, roles, created_at, password_hash FROM users
      WHERE email = ${body.email.trim().toLowerCase()}`;
    if (!row || !(await verifyPassword(body.password, row.password_hash))) {
      throw unauthenticated("wrong email or password");
    }
    const exp = Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_S;
    const token = await new SignJWT({ roles: row.roles })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(row.id)
      .setIssuer("legacy")
      .setIssuedAt()
      .setExpirationTime(exp)
      .sign(secret);
    return {
      access_token: token,
      token_type: "Bearer",
      expire_time: new Date(exp * 1000).toISOString(),
      user: userJson(row),
    };
  });

  app.get<{ Params: { id: string } }>("/api/users/:id", async (req) => {
    const id = uuidParam(req.params.id);
    mayRead(await caller(req), id);
    const [row] = await sql<
      UserRow[]
    >`SELECT id, email, display_name, roles, created_at FROM users WHERE id = ${id}`;
    if (!row) throw notFound(`user ${id} not found`);
    return userJson(row);
  });

  app.get<{ Querystring: Record<string, string | undefined> }>("/api/products", async (req) => {
    const { size, offset } = pageOf(req.query);
    const rows = await sql<ProductRow[]>`
      SELECT p.id, p.sku, p.name, p.price_minor, p.currency, COALESCE(s.on_hand, 0) AS on_hand, p.created_at
      FROM products p LEFT JOIN stock s ON s.product_id = p.id
      ORDER BY p.created_at, p.id LIMIT ${size + 1} OFFSET ${offset}`;
    const more = rows.length > size;
    return {
      products: rows.slice(0, size).map(productJson),
      next_page_token: more ? tokenOf(offset + size) : "",
    };
  });

  app.get<{ Params: { id: string } }>("/api/products/:id", async (req) => {
    const id = uuidParam(req.params.id);
    const [row] = await sql<ProductRow[]>`
      SELECT p.id, p.sku, p.name, p.price_minor, p.currency, COALESCE(s.on_hand, 0) AS on_hand, p.created_at
      FROM products p LEFT JOIN stock s ON s.product_id = p.id WHERE p.id = ${id}`;
    if (!row) throw notFound(`product ${id} not found`);
    return productJson(row);
  });

  async function loadOrder(id: string): Promise<ReturnType<typeof orderJson> | undefined> {
    const [order] = await sql<OrderRow[]>`
      SELECT id, user_id, status, total_minor, currency, created_at, updated_at FROM orders WHERE id = ${id}`;
    if (!order) return undefined;
    const items = await sql<OrderItemRow[]>`
      SELECT product_id, quantity, unit_price_minor FROM order_items WHERE order_id = ${id} ORDER BY product_id`;
    return orderJson(order, items);
  }

  app.post("/api/orders", { schema: { body: orderBody } }, async (req) => {
    const me = await caller(req);
    const body = req.body as { idempotency_key: string; items: { product_id: string; quantity: number }[] };
    const ids = body.items.map((i) => i.product_id.toLowerCase());
    if (new Set(ids).size !== ids.length) throw invalid("items: each product at most once");
    const id = await sql.begin(async (tx) => {
      const [again] = await tx<{ id: string }[]>`
        SELECT id FROM orders WHERE user_id = ${me.id} AND idempotency_key = ${body.idempotency_key}`;
      if (again) return again.id;
      const stock = await tx<(ProductRow & { product_id: string })[]>`
        SELECT p.id, p.sku, p.price_minor, p.currency, s.on_hand FROM products p
        JOIN stock s ON s.product_id = p.id WHERE p.id IN ${tx(ids)} ORDER BY p.id FOR UPDATE OF s`;
      const byId = new Map(stock.map((s) => [s.id, s]));
      let total = 0;
      let currency = "";
      for (const item of body.items) {
        const p = byId.get(item.product_id.toLowerCase());
        if (!p) throw notFound(`product ${item.product_id} not found`);
        if (Number(p.on_hand) < item.quantity) throw precondition(`out of stock: ${p.sku}`);
        if (currency && currency !== p.currency) throw precondition("items: one currency per order");
        currency = p.currency;
        total += Number(p.price_minor) * item.quantity;
      }
      const orderId = randomUUID();
      await tx`INSERT INTO orders (id, user_id, idempotency_key, status, total_minor, currency)
               VALUES (${orderId}, ${me.id}, ${body.idempotency_key}, 'ORDER_STATUS_CONFIRMED', ${total}, ${currency})`;
      for (const item of body.items) {
        const p = byId.get(item.product_id.toLowerCase())!;
        await tx`UPDATE stock SET on_hand = on_hand - ${item.quantity}, updated_at = now() WHERE product_id = ${p.id}`;
        await tx`INSERT INTO order_items (order_id, product_id, quantity, unit_price_minor)
                 VALUES (${orderId}, ${p.id}, ${item.quantity}, ${p.price_minor})`;
      }
      return orderId;
    });
    const order = await loadOrder(id);
    if (!order) throw notFound(`order ${id} not found`);
    return order;
  });

  app.get<{ Params: { id: string } }>("/api/orders/:id", async (req) => {
    const id = uuidParam(req.params.id);
    const me = await caller(req);
    const order = await loadOrder(id);
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
        const o = await loadOrder(r.id);
        if (o) orders.push(o);
      }
      return { orders, next_page_token: rows.length > size ? tokenOf(offset + size) : "" };
    },
  );

  return app;
}
