import type { Sql } from "postgres";
import { hashPassword } from "./passwords.js";

/** The demo customers' password (they are demo data; the monolith seeds no admin). */
export const DEMO_PASSWORD = "legacy-demo-pass";

/** Fixed ids, so a seeded database always looks the same (the recorded sessions use them). */
export const SEED = {
  users: [
    { id: "0b6f1c1e-0000-4000-8000-000000000001", email: "ada@legacy.example", display_name: "Ada" },
    { id: "0b6f1c1e-0000-4000-8000-000000000002", email: "grace@legacy.example", display_name: "Grace" },
    { id: "0b6f1c1e-0000-4000-8000-000000000003", email: "linus@legacy.example", display_name: "Linus" },
  ],
  products: [
    { id: "5d1c0a7e-0000-4000-8000-000000000001", sku: "LEG-KETTLE", name: "Kettle", price: 2999, stock: 40 },
    { id: "5d1c0a7e-0000-4000-8000-000000000002", sku: "LEG-TEAPOT", name: "Teapot", price: 1999, stock: 25 },
    { id: "5d1c0a7e-0000-4000-8000-000000000003", sku: "LEG-MUG", name: "Mug", price: 899, stock: 120 },
    {
      id: "5d1c0a7e-0000-4000-8000-000000000004",
      sku: "LEG-TRAY",
      name: "Serving tray",
      price: 2450,
      stock: 12,
    },
    {
      id: "5d1c0a7e-0000-4000-8000-000000000005",
      sku: "LEG-INFUSER",
      name: "Tea infuser",
      price: 650,
      stock: 70,
    },
    { id: "5d1c0a7e-0000-4000-8000-000000000006", sku: "LEG-COSY", name: "Tea cosy", price: 1250, stock: 0 },
  ],
  orders: [
    {
      id: "7a3e9b2d-0000-4000-8000-000000000001",
      user: 0,
      key: "seed-order-0001",
      items: [
        { product: 0, quantity: 1 },
        { product: 2, quantity: 2 },
      ],
    },
    {
      id: "7a3e9b2d-0000-4000-8000-000000000002",
      user: 1,
      key: "seed-order-0002",
      items: [{ product: 1, quantity: 1 }],
    },
  ],
} as const;

/** Seeds the demo data into an empty database (no users and no products); returns whether it did. */
export async function seed(sql: Sql): Promise<boolean> {
  const hash = await hashPassword(DEMO_PASSWORD);
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext('legacy-seed'))`;
    const [{ n }] =
      (await tx`SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM products) AS n`) as unknown as [
        { n: string },
      ];
    if (Number(n) > 0) return false;
    let minute = 0;
    const at = () => new Date(Date.UTC(2024, 0, 15, 9, minute++));
    for (const u of SEED.users) {
      await tx`INSERT INTO users (id, email, display_name, password_hash, created_at)
               VALUES (${u.id}, ${u.email}, ${u.display_name}, ${hash}, ${at()})`;
    }
    for (const p of SEED.products) {
      await tx`INSERT INTO products (id, sku, name, price_minor, currency, created_at, updated_at)
               VALUES (${p.id}, ${p.sku}, ${p.name}, ${p.price}, 'EUR', ${at()}, now())`;
      await tx`INSERT INTO stock (product_id, on_hand) VALUES (${p.id}, ${p.stock})`;
    }
    for (const o of SEED.orders) {
      const items = o.items.map((i) => ({ ...i, p: SEED.products[i.product]! }));
      const total = items.reduce((s, i) => s + i.p.price * i.quantity, 0);
      const when = at();
      await tx`INSERT INTO orders (id, user_id, idempotency_key, status, total_minor, currency, created_at, updated_at)
               VALUES (${o.id}, ${SEED.users[o.user]!.id}, ${o.key}, 'ORDER_STATUS_CONFIRMED', ${total}, 'EUR', ${when}, ${when})`;
      for (const i of items) {
        await tx`INSERT INTO order_items (order_id, product_id, quantity, unit_price_minor)
                 VALUES (${o.id}, ${i.p.id}, ${i.quantity}, ${i.p.price})`;
      }
    }
    return true;
  });
}
