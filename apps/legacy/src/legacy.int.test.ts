import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  waitFor,
} from "@meshwork/testing";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_PASSWORD, SEED } from "./seed.js";
import { applyStockChanged } from "./sync/reverse-sync.js";

const main = fileURLToPath(new URL("./main.ts", import.meta.url));
let db: TestDatabase;
let proc: ManagedProcess;
let base: string;

async function call(method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers read in assertions
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/**
 * Resolves once `work` has settled or the backend `pid` waits for a lock (seen through `probe`);
 * says which: true when it settled.
 */
async function settledOrWaitingForLock(
  probe: postgres.Sql,
  pid: number,
  work: Promise<unknown>,
  what: string,
): Promise<boolean> {
  let settled = false;
  work.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await waitFor(
    async () =>
      settled ||
      (
        await probe<
          { w: string | null }[]
        >`SELECT wait_event_type AS w FROM pg_stat_activity WHERE pid = ${pid}`
      )[0]?.w === "Lock",
    { what },
  );
  return settled;
}

beforeAll(async () => {
  db = await createTestDatabase("mw_legacy");
  proc = startProcess(process.execPath, ["--import", "tsx", main], {
    env: { DATABASE_URL: db.url, PORT: "0", LOG_LEVEL: "info", LEGACY_TOKEN_SECRET: "x".repeat(40) },
  });
  const line = await proc.waitForLog((l) => l.msg === "listening");
  base = `http://127.0.0.1:${line.port}`;
});

afterAll(async () => {
  await proc?.stop();
  await db?.drop();
});

describe("the legacy monolith", () => {
  it("is seeded with the demo catalogue, pages through it in creation order", async () => {
    const first = await call("GET", "/api/products?page_size=4");
    expect(first.status).toBe(200);
    expect(first.body.products.map((p: { sku: string }) => p.sku)).toEqual(
      SEED.products.slice(0, 4).map((p) => p.sku),
    );
    expect(first.body.products[0]).toMatchObject({
      id: SEED.products[0].id,
      price: { amount_minor: 2999, currency: "EUR" },
      on_hand: 40,
      reserved: 0,
      available: 40,
    });
    const second = await call("GET", `/api/products?page_token=${first.body.next_page_token}`);
    expect(second.body.products).toHaveLength(2);
    expect(second.body.next_page_token).toBe("");
  });

  it("answers bad input and unknown ids with precise codes", async () => {
    expect(await call("GET", "/api/products/nope")).toMatchObject({
      status: 400,
      body: { error: "invalid_argument", message: "id: value must be a valid UUID" },
    });
    expect((await call("GET", "/api/products/5d1c0a7e-0000-4000-8000-0000000000ff")).status).toBe(404);
    expect((await call("GET", "/api/products?page_size=-1")).body.error).toBe("invalid_argument");
    expect((await call("GET", "/api/products?page_token=zzz")).body.message).toMatch(/page_token/);
    const bad = await call("POST", "/api/users", { email: "x@y.z", password: "short", display_name: "X" });
    expect(bad).toMatchObject({ status: 400, body: { error: "invalid_argument" } });
    expect(bad.body.message).toMatch(/password/);
    const res = await fetch(`${base}/api/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{nope",
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe("invalid_argument");
  });

  it("registers, logs in, places an order that takes stock, and keeps orders private", async () => {
    const reg = await call("POST", "/api/users", {
      email: "New@Legacy.example",
      password: "long-enough-pass",
      display_name: "New",
    });
    expect(reg.status).toBe(200);
    expect(reg.body).toMatchObject({ email: "new@legacy.example", roles: ["customer"] });
    expect(
      (
        await call("POST", "/api/users", {
          email: "new@legacy.example",
          password: "long-enough-pass",
          display_name: "N",
        })
      ).status,
    ).toBe(409);
    expect(
      (await call("POST", "/api/login", { email: "new@legacy.example", password: "wrong-pass!" })).status,
    ).toBe(401);
    const login = await call("POST", "/api/login", {
      email: "new@legacy.example",
      password: "long-enough-pass",
    });
    expect(login.body.token_type).toBe("Bearer");
    const token = login.body.access_token as string;

    const teapot = SEED.products[1];
    const order = await call(
      "POST",
      "/api/orders",
      { idempotency_key: "order-key-001", items: [{ product_id: teapot.id, quantity: 2 }] },
      token,
    );
    expect(order.status).toBe(200);
    expect(order.body).toMatchObject({
      user_id: reg.body.id,
      status: "ORDER_STATUS_CONFIRMED",
      total: { amount_minor: 2 * teapot.price, currency: "EUR" },
      items: [
        { product_id: teapot.id, quantity: 2, unit_price: { amount_minor: teapot.price, currency: "EUR" } },
      ],
    });
    const again = await call(
      "POST",
      "/api/orders",
      { idempotency_key: "order-key-001", items: [{ product_id: teapot.id, quantity: 2 }] },
      token,
    );
    expect(again.body.id).toBe(order.body.id);
    expect((await call("GET", `/api/products/${teapot.id}`)).body.on_hand).toBe(teapot.stock - 2);
    const cosy = SEED.products[5];
    expect(
      await call(
        "POST",
        "/api/orders",
        { idempotency_key: "order-key-002", items: [{ product_id: cosy.id, quantity: 1 }] },
        token,
      ),
    ).toMatchObject({
      status: 400,
      body: { error: "failed_precondition", message: `out of stock: ${cosy.sku}` },
    });

    expect((await call("GET", `/api/orders/${order.body.id}`, undefined, token)).body.id).toBe(order.body.id);
    const mine = await call("GET", `/api/users/${reg.body.id}/orders`, undefined, token);
    expect(mine.body.orders.map((o: { id: string }) => o.id)).toEqual([order.body.id]);
    expect((await call("GET", `/api/orders/${order.body.id}`)).status).toBe(401);
    const ada = await call("POST", "/api/login", { email: SEED.users[0].email, password: DEMO_PASSWORD });
    expect((await call("GET", `/api/orders/${order.body.id}`, undefined, ada.body.access_token)).status).toBe(
      403,
    );
    expect((await call("GET", `/api/users/${reg.body.id}`, undefined, ada.body.access_token)).status).toBe(
      403,
    );
    expect((await call("GET", `/api/users/${reg.body.id}`, undefined, token)).body.email).toBe(
      "new@legacy.example",
    );
  });

  it("captures every catalogue and stock change into its CDC outbox, whoever makes it", async () => {
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const mug = SEED.products[2];
      // a back-office script writing straight to the table: the trigger still sees it
      await sql`UPDATE stock SET on_hand = 7, updated_at = now() WHERE product_id = ${mug.id}`;
      const row = await waitFor(
        async () =>
          (
            await sql<{ event_type: string; payload: { on_hand: number; sku: string } }[]>`
              SELECT event_type, payload FROM cdc_outbox WHERE aggregate_id = ${mug.id} ORDER BY seq DESC LIMIT 1`
          )[0],
        { what: "an outbox row for the mug" },
      );
      expect(row.event_type).toBe("legacy.product.changed");
      expect(row.payload).toMatchObject({ sku: mug.sku, on_hand: 7 });
    } finally {
      await sql.end();
    }
  });

  it("captures concurrent changes of one product in order: the newest capture holds both", async () => {
    // Two real transactions on one product, one on products and one on stock, overlapping. Each
    // trigger used to capture a state missing the other's change; the later sequence then carried
    // the old name. Now the second capture waits for the first transaction and sees both.
    const opts = { max: 1, onnotice: () => {} };
    const [a, b, probe] = [postgres(db.url, opts), postgres(db.url, opts), postgres(db.url, opts)];
    try {
      const lamp = SEED.products[3];
      const [before] = await probe<
        { on_hand: string }[]
      >`SELECT on_hand FROM stock WHERE product_id = ${lamp.id}`;
      const [bpid] = await b<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      await a.unsafe("BEGIN");
      await a`UPDATE products SET name = 'Lamp, renamed', updated_at = now() WHERE id = ${lamp.id}`;
      await b.unsafe("BEGIN");
      const stockUpdate =
        b`UPDATE stock SET on_hand = on_hand + 5, updated_at = now() WHERE product_id = ${lamp.id}`.execute();
      // Either b finished (no lock in the trigger) or it waits for a's row lock.
      await settledOrWaitingForLock(
        probe,
        bpid!.pid,
        stockUpdate,
        "the stock update to finish or wait for the product's lock",
      );
      await a.unsafe("COMMIT");
      await stockUpdate;
      await b.unsafe("COMMIT");
      const [last] = await probe<{ payload: { name: string; on_hand: number } }[]>`
        SELECT payload FROM cdc_outbox WHERE aggregate_id = ${lamp.id} ORDER BY seq DESC LIMIT 1`;
      expect(last?.payload).toMatchObject({ name: "Lamp, renamed", on_hand: Number(before!.on_hand) + 5 });
    } finally {
      await Promise.all([a.end(), b.end(), probe.end()]);
    }
  });

  it("writes a reverse-synced stock change in the monolith's lock order: it never deadlocks with an order", async () => {
    // The order path locks a product's row, then its stock row; the capture trigger locks the
    // product after any stock write. A reverse-sync StockChanged that updated stock first would
    // hold the stock row while its trigger waited for the product: deadlock (40P01) against an
    // order that holds the product and asks for the stock. It takes the product's lock first.
    const opts = { max: 1, onnotice: () => {} };
    const [order, syncClient, probe] = [
      postgres(db.url, opts),
      postgres(db.url, opts),
      postgres(db.url, opts),
    ];
    try {
      const chair = SEED.products[1];
      const [spid] = await syncClient<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      await order.unsafe("BEGIN");
      await order`SELECT 1 FROM products WHERE id = ${chair.id} FOR NO KEY UPDATE`; // the order's first lock
      const change = create(StockChangedSchema, { productId: chair.id, version: 1_000_000n, onHand: 77n });
      const applied = drizzle(syncClient).transaction((tx) =>
        applyStockChanged(tx as never, change, { source: "meshwork/inventory" }),
      );
      const settled = await settledOrWaitingForLock(
        probe,
        spid!.pid,
        applied,
        "the reverse sync to wait for the product's lock",
      );
      expect(settled).toBe(false); // it waits for the order, holding nothing the order needs
      await order`SELECT 1 FROM stock WHERE product_id = ${chair.id} FOR NO KEY UPDATE`; // the order's second lock
      await order.unsafe("COMMIT");
      expect(await applied).toBe("applied");
      const [row] = await probe<
        { on_hand: string }[]
      >`SELECT on_hand FROM stock WHERE product_id = ${chair.id}`;
      expect(Number(row?.on_hand)).toBe(77);
    } finally {
      await Promise.all([order.end(), syncClient.end(), probe.end()]);
    }
  });

  it("leaves out of a reverse-synced count what it sold of the mesh's reserved units (held_back), not below 0", async () => {
    const desk = SEED.products[0];
    const d = drizzle(postgres(db.url, { max: 1, onnotice: () => {} }));
    const apply = (version: bigint, onHand: bigint, heldBack: bigint) =>
      d.transaction((tx) =>
        applyStockChanged(
          tx as never,
          create(StockChangedSchema, { productId: desk.id, version, onHand, heldBack }),
          {
            source: "meshwork/inventory",
          },
        ),
      );
    const onHand = async () => {
      const [row] = await d.execute<{ on_hand: string }>(
        sql`SELECT on_hand FROM stock WHERE product_id = ${desk.id}`,
      );
      return Number(row?.on_hand);
    };
    try {
      expect(await apply(2_000_000n, 7n, 3n)).toBe("applied");
      expect(await onHand()).toBe(4);
      expect(await apply(2_000_001n, 2n, 5n)).toBe("applied");
      expect(await onHand()).toBe(0);
    } finally {
      await d.$client.end();
    }
  });
});
