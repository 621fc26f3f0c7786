import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { fromBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { type ProductChanged, ProductChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { connectNats, streamName } from "@meshwork/events";
import { deleteNamespaceStreams } from "@meshwork/events/testing";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  uniqueName,
  waitFor,
  waitForLockWaiter,
} from "@meshwork/testing";
import { jetstream, jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSyncLag } from "./strangler-sync.js";

// The two-way product sync's race on real processes: a legacy capture taken before the reverse
// sync's write of a newer mesh change commits in legacy reaches inventory after that change.
// Taken whole, it rolled inventory back (and legacy kept the mesh's value: the two diverged for
// good). The interleaving is forced: a legacy transaction holds the product (its capture taken,
// not committed) while inventory writes and legacy's reverse sync waits for that lock.
const legacyMain = fileURLToPath(new URL("../../../apps/legacy/dist/main.js", import.meta.url));
const inventoryMain = fileURLToPath(new URL("../../../apps/inventory/dist/main.js", import.meta.url));
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const SYNC_KEY = `k1:${randomBytes(32).toString("base64")}`;

const namespace = `${uniqueName("sr")}.`;
let legacyDb: TestDatabase;
let inventoryDb: TestDatabase;
let legacy: ManagedProcess | undefined;
let inventory: ManagedProcess | undefined;
let inventoryUrl: string;
let lsql: postgres.Sql;
let isql: postgres.Sql;

const client = () => createClient(InventoryService, createGrpcTransport({ baseUrl: inventoryUrl }));

const common = { NATS_URL: natsUrl, EVENTS_NAMESPACE: namespace, PORT: "0", LOG_LEVEL: "info" };

/** Starts inventory on its database (again, after a stop: its durable consumer waits for it). */
async function startInventory(): Promise<void> {
  inventory = startProcess(process.execPath, [inventoryMain], {
    env: { ...common, DATABASE_URL: inventoryDb.url, DISCOVERY: "static", CACHE_SHARED: "none" },
  });
  const line = await inventory.waitForLog((l) => l.msg === "listening", 60_000);
  inventoryUrl = `http://127.0.0.1:${line.port}`;
  await waitFor(
    async () =>
      !!(await client()
        .listProducts({ pageSize: 1 })
        .catch(() => undefined)),
    {
      what: "inventory SERVING",
      timeoutMs: 60_000,
    },
  );
}

beforeAll(async () => {
  legacyDb = await createTestDatabase("mw_race_legacy");
  inventoryDb = await createTestDatabase("mw_race_inv");
  lsql = postgres(legacyDb.url, { max: 3, onnotice: () => {} });
  isql = postgres(inventoryDb.url, { max: 1, onnotice: () => {} });
  legacy = startProcess(process.execPath, [legacyMain], {
    env: {
      ...common,
      DATABASE_URL: legacyDb.url,
      LEGACY_TOKEN_SECRET: "s".repeat(40),
      LEGACY_SYNC_KEY: SYNC_KEY,
    },
  });
  await legacy.waitForLog((l) => l.msg === "listening", 60_000);
  await startInventory();
}, 120_000);

afterAll(async () => {
  await inventory?.stop();
  await legacy?.stop();
  await lsql?.end({ timeout: 5 });
  await isql?.end({ timeout: 5 });
  await deleteNamespaceStreams(namespace, natsUrl);
  await inventoryDb?.drop();
  await legacyDb?.drop();
});

interface Both {
  legacy: { name: string; onHand: number };
  mesh: { name: string; onHand: number };
}

async function readBoth(id: string): Promise<Both> {
  const [l] = await lsql<{ name: string; on_hand: string }[]>`
    select p.name, s.on_hand from products p join stock s on s.product_id = p.id where p.id = ${id}`;
  const m = (await client().getProduct({ id })).product!;
  return {
    legacy: { name: l!.name, onHand: Number(l!.on_hand) },
    mesh: { name: m.name, onHand: Number(m.onHand) },
  };
}

/** Nothing in flight either way: legacy's and inventory's outboxes drained, both consumers caught up. */
async function settled(): Promise<boolean> {
  const [left] = await lsql<{ n: number }[]>`
    select ((select count(*) from cdc_outbox where sent_at is null)
          + (select count(*) from cdc_events where sent_at is null))::int as n`;
  if (left?.n !== 0) return false;
  const [unsent] = await isql<{ n: number }[]>`select count(*)::int as n from outbox where sent_at is null`;
  if (unsent?.n !== 0) return false;
  const lag = await readSyncLag({ natsUrl, namespace });
  return lag
    .filter((l) => !l.flow.includes("orders") && !l.flow.includes("users"))
    .every((l) => l.behind === 0);
}

/**
 * Both sides agree on `expected`, read between two moments with nothing in flight (so the read is
 * the final state, not one that an event still on its way would change).
 */
async function converged(id: string, expected: { name: string; onHand: number }): Promise<Both> {
  let last: Both | undefined;
  try {
    await waitFor(
      async () => {
        if (!(await settled())) return false;
        last = await readBoth(id);
        const same = (s: { name: string; onHand: number }) =>
          s.name === expected.name && s.onHand === expected.onHand;
        return same(last.legacy) && same(last.mesh) && (await settled());
      },
      { what: `both sides at ${JSON.stringify(expected)}`, timeoutMs: 30_000 },
    );
  } catch (err) {
    throw new Error(`${String(err)}; last read ${JSON.stringify(last)}`);
  }
  return readBoth(id);
}

/**
 * Runs `legacyChange` in a legacy transaction held open after it (its capture is taken, not
 * committed), does `meshChange` meanwhile and waits until legacy's reverse sync is blocked on the
 * product's lock, then commits the legacy transaction.
 */
/** A promise and the function that resolves it (a gate one side waits at, the other opens). */
function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

async function interleave(
  legacyChange: (tx: postgres.TransactionSql) => Promise<unknown>,
  meshChange: () => Promise<unknown>,
): Promise<void> {
  const { promise: gate, open: release } = latch();
  const { promise: captured, open: taken } = latch();
  const held = lsql.begin(async (tx) => {
    await legacyChange(tx);
    taken();
    await gate;
  });
  await captured;
  try {
    await meshChange();
    await waitForLockWaiter(legacyDb, "legacy's reverse sync waiting for the held product");
  } finally {
    release();
    await held;
  }
}

async function legacyProduct(onHand: number): Promise<string> {
  const id = randomUUID();
  await lsql.begin(async (tx) => {
    await tx`insert into products (id, sku, name, price_minor, currency)
             values (${id}, ${`LEG-RACE-${id.slice(0, 8)}`}, 'Old name', 900, 'EUR')`;
    await tx`insert into stock (product_id, on_hand) values (${id}, ${onHand})`;
  });
  await converged(id, { name: "Old name", onHand });
  return id;
}

describe("strangler: a legacy capture concurrent with a newer mesh write", () => {
  it("stock: a legacy sale and an inventory adjustment both count, on both sides", async () => {
    const id = await legacyProduct(10);
    await interleave(
      (tx) => tx`update stock set on_hand = on_hand - 1, updated_at = now() where product_id = ${id}`,
      () => client().adjustStock({ productId: id, delta: 5n }),
    );
    // 10 - 1 (legacy's sale) + 5 (inventory's adjustment). Before the fix inventory took the
    // capture's 9 whole (its +5 rolled back) while legacy kept inventory's 15.
    const t0 = Date.now();
    const after = await converged(id, { name: "Old name", onHand: 14 });
    process.stdout.write(
      `stock race: ${JSON.stringify(after)}, settled ${Date.now() - t0} ms after the commit\n`,
    );

    // A legacy change taken after the mesh's writes reached legacy is not concurrent: whole state.
    await lsql`update stock set on_hand = on_hand - 2, updated_at = now() where product_id = ${id}`;
    await converged(id, { name: "Old name", onHand: 12 });
    // And the mesh's own sale still reaches legacy.
    await client().adjustStock({ productId: id, delta: -3n });
    await converged(id, { name: "Old name", onHand: 9 });
  }, 120_000);

  it("catalogue: a legacy rename concurrent with a mesh rename ends on the mesh's name, on both sides", async () => {
    const id = await legacyProduct(4);
    await interleave(
      (tx) => tx`update products set name = 'Legacy name', updated_at = now() where id = ${id}`,
      () => client().updateProduct({ id, name: "Mesh name" }),
    );
    // Before the fix inventory took 'Legacy name' from the capture, legacy 'Mesh name' from the
    // reverse sync: each side ended on the other's name.
    const t0 = Date.now();
    await converged(id, { name: "Mesh name", onHand: 4 });
    process.stdout.write(
      `rename race: both on the mesh's name, settled ${Date.now() - t0} ms after the commit\n`,
    );
    // A later legacy rename (it has seen the mesh's) is taken.
    await lsql`update products set name = 'Renamed in legacy', updated_at = now() where id = ${id}`;
    await converged(id, { name: "Renamed in legacy", onHand: 4 });
  }, 120_000);

  it("a concurrent capture carrying both a rename and a sale keeps the sale and the mesh's newer stock", async () => {
    const id = await legacyProduct(20);
    await interleave(
      async (tx) => {
        await tx`update products set name = 'Both', updated_at = now() where id = ${id}`;
        await tx`update stock set on_hand = on_hand - 4, updated_at = now() where product_id = ${id}`;
      },
      () => client().adjustStock({ productId: id, delta: -6n }),
    );
    // The mesh wrote stock only: legacy's rename is not concurrent with any mesh rename, so it
    // is taken; the two sales add up (20 - 4 - 6).
    await converged(id, { name: "Both", onHand: 10 });
  }, 120_000);
});

/** The count legacy holds for a product. */
async function legacyOnHand(id: string): Promise<number> {
  const [row] = await lsql<{ on_hand: string }[]>`select on_hand from stock where product_id = ${id}`;
  return Number(row!.on_hand);
}

/** A product capture as stored on the LEGACY stream. */
interface StreamedCapture {
  msg: StoredMsg;
  e: ProductChanged;
}

/** Legacy's captures of a product on the LEGACY stream, by capture sequence. */
async function streamedCaptures(id: string): Promise<StreamedCapture[]> {
  const nc = await connectNats(natsUrl, "test");
  try {
    const jsm = await jetstreamManager(nc);
    const stream = streamName(namespace, "LEGACY");
    const { state } = await jsm.streams.info(stream);
    const found: StreamedCapture[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (!m?.subject.endsWith("meshwork.legacy.v1.ProductChanged")) continue;
      const e = fromBinary(ProductChangedSchema, m.data);
      if (e.productId === id) found.push({ msg: m, e });
    }
    return found.sort((a, b) => Number(a.e.sequence - b.e.sequence));
  } finally {
    await nc.close();
  }
}

/**
 * Delivers a captured message again after everything on the stream: the copy is published
 * (same headers and event id, no broker de-duplication id) and the original deleted, as a
 * redelivery that comes after a later message would reach the consumer.
 */
async function redeliverLast(
  stream: string,
  msg: Awaited<ReturnType<typeof streamedCaptures>>[number]["msg"],
) {
  const nc = await connectNats(natsUrl, "test");
  try {
    const h = natsHeaders();
    for (const k of msg.header.keys()) if (k !== "Nats-Msg-Id") h.set(k, msg.header.get(k));
    await (await jetstreamManager(nc)).streams.deleteMessage(stream, msg.seq);
    await jetstream(nc).publish(msg.subject, msg.data, { msgID: randomUUID(), headers: h });
  } finally {
    await nc.close();
  }
}

describe("strangler: a later legacy capture delivered before an earlier concurrent one", () => {
  it("keeps the earlier capture's sale, on both sides", async () => {
    const id = await legacyProduct(10);
    const { promise: gate, open: release } = latch();
    const { promise: captured, open: taken } = latch();
    // Legacy sells 1 (capture A: 9 on hand, not committed) while inventory adds 5 (published for
    // legacy); inventory is stopped once its event is out, so neither capture reaches it yet.
    const held = lsql.begin(async (tx) => {
      await tx`update stock set on_hand = on_hand - 1, updated_at = now() where product_id = ${id}`;
      taken();
      await gate;
    });
    await captured;
    try {
      await client().adjustStock({ productId: id, delta: 5n });
      await waitFor(
        async () =>
          (await isql<{ n: number }[]>`select count(*)::int as n from outbox where sent_at is null`)[0]?.n ===
          0,
        { what: "inventory's +5 published", timeoutMs: 20_000 },
      );
      await inventory!.stop();
      inventory = undefined;
    } finally {
      release();
      await held;
    }
    // Legacy's reverse sync then writes inventory's 15 over legacy's 9 (its sale is left only in
    // legacy's running sum), and legacy sells 2 more: capture B, 13 on hand, has seen the +5.
    await waitFor(async () => (await legacyOnHand(id)) === 15, {
      what: "legacy's reverse sync to apply inventory's +5",
      timeoutMs: 20_000,
    });
    await lsql`update stock set on_hand = on_hand - 2, updated_at = now() where product_id = ${id}`;
    let captures: StreamedCapture[] = [];
    await waitFor(
      async () => {
        captures = await streamedCaptures(id);
        return captures.at(-1)?.e.onHand === 13n;
      },
      { what: "capture B on the LEGACY stream", timeoutMs: 20_000 },
    );
    const [a, b] = captures.slice(-2);
    expect(a!.e).toMatchObject({ onHand: 9n, legacyStockDelta: 9n });
    expect(b!.e).toMatchObject({ onHand: 13n, legacyStockDelta: 7n });
    expect(b!.e.seenStockVersion).toBeGreaterThan(a!.e.seenStockVersion!);
    // A reaches inventory after B (B first, then A again: stale by its lower sequence).
    await redeliverLast(streamName(namespace, "LEGACY"), a!.msg);
    await startInventory();
    // 10 - 1 + 5 - 2. Before the fix inventory took B's 13 whole and dropped A: legacy's first
    // sale was lost on both sides.
    const t0 = Date.now();
    const after = await converged(id, { name: "Old name", onHand: 12 });
    process.stdout.write(
      `reordered captures: ${JSON.stringify(after)}, settled ${Date.now() - t0} ms after inventory's restart\n`,
    );
  }, 180_000);
});

describe("strangler: legacy selling units inventory's reservations hold", () => {
  it("legacy keeps its lower count (no unit sold twice), and the release takes its sale out on both sides", async () => {
    const id = await legacyProduct(5);
    const reservationId = randomUUID();
    await client().reserveStock({ reservationId, items: [{ productId: id, quantity: 5n }] });
    await converged(id, { name: "Old name", onHand: 5 });
    // Legacy, not knowing the reservation, sells 3. Inventory's count stops at the 5 reserved (3
    // held back); legacy keeps its 2. Before, inventory sent 5 back and legacy sold them again.
    await lsql`update stock set on_hand = on_hand - 3, updated_at = now() where product_id = ${id}`;
    let quiet: Both | undefined;
    await waitFor(
      async () => {
        if (!(await settled())) return false;
        quiet = await readBoth(id);
        return await settled();
      },
      { what: "the sale applied and nothing in flight", timeoutMs: 30_000 },
    );
    expect({ legacy: quiet!.legacy.onHand, mesh: quiet!.mesh.onHand }).toEqual({ legacy: 2, mesh: 5 });
    // The release frees the units: inventory takes legacy's sale out, with no further legacy change.
    await client().releaseReservation({ reservationId });
    const t0 = Date.now();
    const after = await converged(id, { name: "Old name", onHand: 2 });
    process.stdout.write(
      `held back: ${JSON.stringify(after)}, settled ${Date.now() - t0} ms after the release\n`,
    );
  }, 120_000);
});
