import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
  OrderPlacedSchema,
} from "@meshwork/contracts/meshwork/orders/v1/events";
import { cloudEventHeaders, connectNats, createEnvelope, streamName } from "@meshwork/events";
import { deleteNamespaceStreams } from "@meshwork/events/testing";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { nanos, headers as natsHeaders } from "@nats-io/transport-node";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_PASSWORD, SEED } from "../seed.js";
import { applyOrderEnded, applyOrderPlaced } from "./order-sync.js";

// The orders reverse sync on a real legacy process over the shared NATS: the orders service's
// events are published onto the ORDERS stream as its outbox relay publishes them.
const main = fileURLToPath(new URL("../main.ts", import.meta.url));
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
/** The bound a mesh order must reach legacy's tables within (the measured figure is printed). */
const SYNC_BOUND_MS = 5_000;
const namespace = `${uniqueName("os")}.`;
const ada = SEED.users[0]!;
const kettle = SEED.products[0]!;
const mug = SEED.products[2]!;

let db: TestDatabase;
let legacy: ManagedProcess;
let base: string;
let lsql: postgres.Sql;
let token: string;

async function publish<D extends DescMessage>(schema: D, message: MessageShape<D>, msgId = randomUUID()) {
  const envelope = createEnvelope(schema, message, { source: "meshwork/orders", namespace });
  const nc = await connectNats(natsUrl, "test");
  try {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(envelope))) h.set(k, v);
    await jetstream(nc).publish(envelope.subject, envelope.data, { msgID: msgId, headers: h });
  } finally {
    await nc.close();
  }
}

function placed(orderId: string, userId: string = ada.id) {
  return create(OrderPlacedSchema, {
    orderId,
    userId,
    total: { amountMinor: BigInt(2 * kettle.price + mug.price), currency: "EUR" },
    placeTime: timestampFromDate(new Date("2026-12-06T20:00:00Z")),
    // In the order the client gave them (legacy lists them by product id).
    items: [
      { productId: mug.id, quantity: 1n, unitPrice: { amountMinor: BigInt(mug.price), currency: "EUR" } },
      {
        productId: kettle.id,
        quantity: 2n,
        unitPrice: { amountMinor: BigInt(kettle.price), currency: "EUR" },
      },
    ],
  });
}
const confirmed = (orderId: string) =>
  create(OrderConfirmedSchema, { orderId, userId: ada.id, confirmTime: timestampFromDate(new Date()) });
const cancelled = (orderId: string) =>
  create(OrderCancelledSchema, {
    orderId,
    userId: ada.id,
    reason: "payment declined: test",
    cancelTime: timestampFromDate(new Date()),
  });

async function legacyOrder(id: string) {
  const res = await fetch(`${base}/api/orders/${id}`, { headers: { authorization: `Bearer ${token}` } });
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers read in assertions
  return { status: res.status, body: (await res.json()) as any };
}

const stockOf = async () =>
  (
    await lsql<
      { id: string; on_hand: string }[]
    >`select product_id as id, on_hand from stock order by product_id`
  ).map((r) => `${r.id}=${r.on_hand}`);

/** Waits until the consumer has taken every event published so far (none pending or unacked). */
async function drained(): Promise<void> {
  const nc = await connectNats(natsUrl, "test");
  try {
    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => {
        const info = await jsm.consumers.info(streamName(namespace, "ORDERS"), "legacy-order-sync");
        return info.num_pending === 0 && info.num_ack_pending === 0;
      },
      { what: "the order sync to take every event" },
    );
  } finally {
    await nc.close();
  }
}

/** The ORDERS stream as its owner (the orders service) made it: settings legacy must not change. */
const OWNERS_MAX_AGE_MS = 3 * 86_400_000;
const OWNERS_DESCRIPTION = "the orders service's events (its own config)";

beforeAll(async () => {
  const nc = await connectNats(natsUrl, "test");
  try {
    await (await jetstreamManager(nc)).streams.add({
      name: streamName(namespace, "ORDERS"),
      subjects: [`${namespace}meshwork.orders.>`],
      max_age: nanos(OWNERS_MAX_AGE_MS),
      description: OWNERS_DESCRIPTION,
    });
  } finally {
    await nc.close();
  }
  db = await createTestDatabase("mw_ordsync");
  lsql = postgres(db.url, { max: 2, onnotice: () => {} });
  legacy = startProcess(process.execPath, ["--import", "tsx", main], {
    env: {
      DATABASE_URL: db.url,
      PORT: "0",
      NATS_URL: natsUrl,
      EVENTS_NAMESPACE: namespace,
      LEGACY_TOKEN_SECRET: "s".repeat(40),
      LEGACY_SYNC_KEY: `k1:${randomBytes(32).toString("base64")}`,
    },
  });
  const line = await legacy
    .waitForLog((l) => l.msg === "listening", 120_000)
    .catch((err: unknown) => {
      process.stderr.write(`legacy's output:\n${legacy.lines.slice(-20).join("\n")}\n`);
      throw err;
    });
  base = `http://127.0.0.1:${line.port}`;
  const login = await fetch(`${base}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: ada.email, password: DEMO_PASSWORD }),
  });
  token = ((await login.json()) as { access_token: string }).access_token;
}, 180_000);

afterAll(async () => {
  await legacy?.stop();
  await lsql?.end({ timeout: 5 });
  await deleteNamespaceStreams(namespace, natsUrl);
  await db?.drop();
});

describe("the orders reverse sync (mesh order events -> legacy's orders tables)", () => {
  it("consumes the orders service's stream without changing it, and leaves a missing INVENTORY stream to its owner", async () => {
    const nc = await connectNats(natsUrl, "test");
    try {
      const jsm = await jetstreamManager(nc);
      // Legacy's durable exists (the sync started), yet the stream keeps its owner's config: a
      // declaration from legacy would set max_age back to 7 days (and num_replicas to 1).
      await jsm.consumers.info(streamName(namespace, "ORDERS"), "legacy-order-sync");
      const orders = await jsm.streams.info(streamName(namespace, "ORDERS"));
      expect(orders.config.max_age).toBe(nanos(OWNERS_MAX_AGE_MS));
      expect(orders.config.description).toBe(OWNERS_DESCRIPTION);
      expect(orders.config.num_replicas).toBe(1);
      // Inventory has not made its stream in this namespace: legacy waits for it, creates none.
      const missing = await jsm.streams.info(streamName(namespace, "INVENTORY")).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(Error);
      expect(
        legacy
          .logs()
          .some((l) => l.stream === streamName(namespace, "INVENTORY") && /not found/.test(String(l.msg))),
      ).toBe(true);
    } finally {
      await nc.close();
    }
  });

  it("copies a mesh order into legacy's tables within the bound, then its confirmation; stock untouched, nothing captured", async () => {
    const id = randomUUID();
    const stockBefore = await stockOf();
    const capturedBefore = (await lsql<{ n: number }[]>`select count(*)::int as n from cdc_outbox`)[0]?.n;
    const t0 = Date.now();
    await publish(OrderPlacedSchema, placed(id));
    const first = await waitFor(
      async () => {
        const o = await legacyOrder(id);
        return o.status === 200 ? o.body : undefined;
      },
      { what: "the mesh order in legacy", timeoutMs: SYNC_BOUND_MS },
    );
    process.stdout.write(`mesh -> legacy: order placed visible after ${Date.now() - t0} ms\n`);
    expect(first).toMatchObject({
      id,
      user_id: ada.id,
      status: "ORDER_STATUS_PENDING",
      total: { amount_minor: 2 * kettle.price + mug.price, currency: "EUR" },
      create_time: "2026-12-06T20:00:00.000Z",
    });
    expect(
      first.items.map((i: { product_id: string; quantity: number }) => [i.product_id, i.quantity]),
    ).toEqual([
      [kettle.id, 2],
      [mug.id, 1],
    ]);
    await publish(OrderConfirmedSchema, confirmed(id));
    await waitFor(async () => (await legacyOrder(id)).body.status === "ORDER_STATUS_CONFIRMED", {
      what: "the confirmation in legacy",
      timeoutMs: SYNC_BOUND_MS,
    });
    // Legacy's report lists it.
    const report = await fetch(`${base}/api/users/${ada.id}/orders`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(((await report.json()) as { orders: { id: string }[] }).orders.map((o) => o.id)).toContain(id);
    // Inventory's StockChanged carries the stock the order took: the order sync takes none.
    expect(await stockOf()).toEqual(stockBefore);
    const capturedAfter = (await lsql<{ n: number }[]>`select count(*)::int as n from cdc_outbox`)[0]?.n;
    expect(capturedAfter).toBe(capturedBefore);
  });

  it("moves a status forward only: a late OrderPlaced keeps the end seen first, repeats change nothing", async () => {
    const late = randomUUID();
    await publish(OrderCancelledSchema, cancelled(late));
    await publish(OrderPlacedSchema, placed(late));
    await waitFor(async () => (await legacyOrder(late)).status === 200, { what: "the late placement" });
    expect((await legacyOrder(late)).body.status).toBe("ORDER_STATUS_CANCELLED");

    const id = randomUUID();
    await publish(OrderPlacedSchema, placed(id));
    await publish(OrderConfirmedSchema, confirmed(id));
    // Redelivered copies under new message ids (the inbox cannot tell): the guard holds.
    await publish(OrderCancelledSchema, cancelled(id));
    await publish(OrderPlacedSchema, placed(id));
    await drained();
    expect((await legacyOrder(id)).body.status).toBe("ORDER_STATUS_CONFIRMED");
    const n = (
      await lsql<{ n: number }[]>`select count(*)::int as n from order_items where order_id = ${id}`
    )[0]?.n;
    expect(n).toBe(2);
  });

  it("leaves out an order of a user legacy does not know (its foreign keys could not hold)", async () => {
    const id = randomUUID();
    await publish(OrderPlacedSchema, placed(id, randomUUID()));
    await drained();
    const n = (await lsql<{ n: number }[]>`select count(*)::int as n from orders where id = ${id}`)[0]?.n;
    expect(n).toBe(0);
  });

  it("cannot deadlock two replicas whose batches hold the same orders' events in opposite orders", async () => {
    // Replica 1's batch is [A placed, B confirmed], replica 2's [B placed, A confirmed], each one
    // transaction. With a lock per order taken in event order, 1 holds A and waits for B while 2
    // holds B and waits for A: Postgres aborts one (40P01) and its events are redelivered, each
    // abort a step towards the dead letters. The sync's one lock per batch makes 2 wait for 1.
    const [a, b] = [randomUUID(), randomUUID()];
    const opts = { max: 1, onnotice: () => {} };
    const [r1, r2] = [postgres(db.url, opts), postgres(db.url, opts)];
    const deferred = () => {
      let resolve = () => {};
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      return { promise, resolve };
    };
    const [firstPlaced, secondPlaced, go] = [deferred(), deferred(), deferred()];
    try {
      const [p2] = await r2<{ pid: number }[]>`select pg_backend_pid() as pid`;
      const one = drizzle(r1).transaction(async (tx) => {
        await applyOrderPlaced(tx as never, placed(a));
        firstPlaced.resolve();
        await go.promise;
        await applyOrderEnded(tx as never, confirmed(b), "ORDER_STATUS_CONFIRMED");
      });
      await firstPlaced.promise;
      const two = drizzle(r2).transaction(async (tx) => {
        await applyOrderPlaced(tx as never, placed(b));
        secondPlaced.resolve();
        await go.promise;
        await applyOrderEnded(tx as never, confirmed(a), "ORDER_STATUS_CONFIRMED");
      });
      const outcomes = Promise.allSettled([one, two]);
      let placedAtOnce = false;
      void secondPlaced.promise.then(() => {
        placedAtOnce = true;
      });
      await waitFor(
        async () =>
          placedAtOnce ||
          (
            await lsql<
              { w: string | null }[]
            >`select wait_event_type as w from pg_stat_activity where pid = ${p2!.pid}`
          )[0]?.w === "Lock",
        { what: "replica 2 to place B or to wait for replica 1" },
      );
      expect(placedAtOnce).toBe(false); // replica 2 waits for replica 1's batch, holding nothing
      go.resolve();
      expect(
        (await outcomes).map((o) => (o.status === "rejected" ? String(o.reason?.cause ?? o.reason) : "ok")),
      ).toEqual(["ok", "ok"]);
      for (const id of [a, b]) expect((await legacyOrder(id)).body.status).toBe("ORDER_STATUS_CONFIRMED");
    } finally {
      go.resolve();
      await r1.end({ timeout: 5 });
      await r2.end({ timeout: 5 });
    }
  });
});
