import { randomUUID } from "node:crypto";
import { migrate, SEED, seed } from "@meshwork/legacy";
import { createTestDatabase, type TestDatabase, waitFor } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SNAPSHOTS, snapshotAll } from "./strangler-sync.js";

// The backfill's snapshots against a real legacy database (its migrations and seed, no relay):
// review finding 7, a snapshot taken while a legacy write is in flight must not let the older
// state win, and the orders' capture (schema step 6) that the orders backfill goes with.
let db: TestDatabase;
let sql: postgres.Sql;
const grace = SEED.users[1]!;
const ada = SEED.users[0]!;
const kettle = SEED.products[0]!;
const mug = SEED.products[2]!;

const quiet = { write: () => true } as unknown as NodeJS.WritableStream;

beforeAll(async () => {
  db = await createTestDatabase("mw_snap");
  sql = postgres(db.url, { max: 2, onnotice: () => {} });
  await migrate(sql);
  await seed(sql);
}, 60_000);

afterAll(async () => {
  await sql?.end({ timeout: 5 });
  await db?.drop();
});

/** The state captured last (highest sequence) for a row. */
async function newest(id: string) {
  const [row] = await sql<{ seq: string; event_type: string; payload: Record<string, unknown> }[]>`
    select seq, event_type, payload from cdc_outbox where aggregate_id = ${id} order by seq desc limit 1`;
  return row;
}

/**
 * A legacy write whose capture took its sequence but has not committed; the snapshot is started
 * meanwhile and the write committed once the snapshot waits for it (or finished without it).
 */
async function snapshotDuring(
  write: (tx: postgres.TransactionSql) => Promise<unknown>,
  kind: keyof typeof SNAPSHOTS,
) {
  const writer = postgres(db.url, { max: 1, onnotice: () => {} });
  const snapper = postgres(db.url, { max: 1, onnotice: () => {} });
  let release = () => {};
  const released = new Promise<void>((r) => {
    release = r;
  });
  let written = () => {};
  const inFlight = new Promise<void>((r) => {
    written = r;
  });
  try {
    const [pid] = await snapper<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const writing = writer.begin(async (tx) => {
      await write(tx);
      written();
      await released;
    });
    await inFlight;
    let done = false;
    const snapshot = snapshotAll(snapper, SNAPSHOTS[kind], 500, quiet).finally(() => {
      done = true;
    });
    const blocked = await waitFor(
      async () => {
        if (done) return "finished";
        const [a] = await sql<{ w: string | null }[]>`
          select wait_event_type as w from pg_stat_activity where pid = ${pid!.pid}`;
        return a?.w === "Lock" ? "waiting" : undefined;
      },
      { what: "the snapshot to wait for the write or to finish" },
    );
    release();
    await writing;
    await snapshot;
    return blocked;
  } finally {
    release();
    await writer.end({ timeout: 5 });
    await snapper.end({ timeout: 5 });
  }
}

describe("backfill snapshots (review finding 7) and the orders' capture", () => {
  it("a user snapshot waits for a write in flight, so the later state has the higher sequence", async () => {
    const blocked = await snapshotDuring(
      (tx) => tx`update users set display_name = 'Grace H.' where id = ${grace.id}`,
      "users",
    );
    // Without the SHARE lock the snapshot reads the row as it was (the write is uncommitted) and
    // writes it under a higher sequence than the write's capture: the old name would win.
    expect(blocked).toBe("waiting");
    const last = await newest(grace.id);
    expect(last?.event_type).toBe("legacy.user.snapshot");
    expect(last?.payload.display_name).toBe("Grace H.");
  }, 30_000);

  it("a product snapshot waits for a stock change in flight", async () => {
    const blocked = await snapshotDuring(
      (tx) => tx`update stock set on_hand = 7, updated_at = now() where product_id = ${kettle.id}`,
      "products",
    );
    expect(blocked).toBe("waiting");
    expect(Number((await newest(kettle.id))?.payload.on_hand)).toBe(7);
  }, 30_000);

  it("an order placed in legacy is captured once, at commit, with its lines; an order snapshot waits for it", async () => {
    const id = randomUUID();
    const blocked = await snapshotDuring(async (tx) => {
      await tx`insert into orders (id, user_id, idempotency_key, status, total_minor, currency)
               values (${id}, ${ada.id}, ${`k-${id}`}, 'ORDER_STATUS_CONFIRMED', ${kettle.price + 3 * mug.price}, 'EUR')`;
      await tx`insert into order_items (order_id, product_id, quantity, unit_price_minor)
               values (${id}, ${mug.id}, 3, ${mug.price}), (${id}, ${kettle.id}, 1, ${kettle.price})`;
    }, "orders");
    expect(blocked).toBe("waiting");
    const rows = await sql<{ seq: string; event_type: string; payload: Record<string, unknown> }[]>`
      select seq, event_type, payload from cdc_outbox where aggregate_id = ${id} order by seq`;
    // One capture for the order and its two lines (deferred to commit), then the snapshot.
    expect(rows.map((r) => r.event_type)).toEqual(["legacy.order.changed", "legacy.order.snapshot"]);
    for (const r of rows)
      expect(r.payload).toMatchObject({
        id,
        user_id: ada.id,
        idempotency_key: `k-${id}`,
        status: "ORDER_STATUS_CONFIRMED",
        total_minor: kettle.price + 3 * mug.price,
        items: [
          { product_id: kettle.id, quantity: 1, unit_price_minor: kettle.price },
          { product_id: mug.id, quantity: 3, unit_price_minor: mug.price },
        ].sort((a, b) => (a.product_id < b.product_id ? -1 : 1)),
      });
  }, 30_000);

  it("an order from the mesh (the order sync's origin marker, or its mesh: key) is neither captured nor snapshotted", async () => {
    const marked = randomUUID();
    const keyed = randomUUID();
    await sql.begin(async (tx) => {
      await tx`select set_config('meshwork.origin', 'mesh', true)`;
      await tx`insert into orders (id, user_id, idempotency_key, status, total_minor, currency)
               values (${marked}, ${ada.id}, ${`k-${marked}`}, 'ORDER_STATUS_PENDING', 899, 'EUR')`;
      await tx`insert into order_items (order_id, product_id, quantity, unit_price_minor)
               values (${marked}, ${mug.id}, 1, 899)`;
    });
    // A later change by hand (no marker) of an order the sync wrote under its mesh: key.
    await sql.begin(async (tx) => {
      await tx`select set_config('meshwork.origin', 'mesh', true)`;
      await tx`insert into orders (id, user_id, idempotency_key, status, total_minor, currency)
               values (${keyed}, ${ada.id}, ${`mesh:${keyed}`}, 'ORDER_STATUS_PENDING', 899, 'EUR')`;
    });
    await sql`update orders set status = 'ORDER_STATUS_CONFIRMED' where id = ${keyed}`;
    const captured = async (id: string) =>
      (await sql<{ n: number }[]>`select count(*)::int as n from cdc_outbox where aggregate_id = ${id}`)[0]
        ?.n;
    expect(await captured(marked)).toBe(0);
    expect(await captured(keyed)).toBe(0);
    await snapshotAll(sql, SNAPSHOTS.orders, 500, quiet);
    expect(await captured(keyed)).toBe(0);
  }, 30_000);
});
