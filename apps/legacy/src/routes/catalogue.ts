import type { FastifyInstance } from "fastify";
import type { Sql } from "postgres";
import { notFound } from "../errors.js";
import { pageOf, tokenOf, uuidParam } from "../http.js";
import { type ProductRow, productJson } from "../shapes.js";

/** `GET /api/products`, `GET /api/products/{id}`: products joined with their stock. */
export function registerCatalogueRoutes(app: FastifyInstance, sql: Sql): void {
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
}
