import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { ProductChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
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
import { headers as natsHeaders } from "@nats-io/transport-node";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stranglerCommand } from "./strangler.js";
import { readSyncLag } from "./strangler-sync.js";

// The migration's data sync on real processes: the legacy monolith (its CDC relay and reverse
// sync) and the inventory service, each on its own database, over the shared NATS.
const legacyMain = fileURLToPath(new URL("../../../apps/legacy/dist/main.js", import.meta.url));
const inventoryMain = fileURLToPath(new URL("../../../apps/inventory/dist/main.js", import.meta.url));
const usersMain = fileURLToPath(new URL("../../../apps/users/dist/main.js", import.meta.url));
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const SYNC_KEY = `k1:${randomBytes(32).toString("base64")}`;
/** The bound a legacy write must reach inventory within (measured figures are printed). */
const SYNC_BOUND_MS = 5_000;

const namespace = `${uniqueName("sg")}.`;
let legacyDb: TestDatabase;
let inventoryDb: TestDatabase;
let usersDb: TestDatabase;
let users: ManagedProcess | undefined;
let usql: postgres.Sql;
let legacy: ManagedProcess | undefined;
let inventory: ManagedProcess | undefined;
let inventoryUrl: string;
let lsql: postgres.Sql;

const text = () => {
  let s = "";
  return {
    stream: {
      write: (c: string) => {
        s += c;
        return true;
      },
    } as unknown as NodeJS.WritableStream,
    get: () => s,
  };
};

async function backfillOnce(): Promise<{ code: number; out: string; err: string }> {
  const out = text();
  const err = text();
  const code = await stranglerCommand(["backfill"], {
    admin: "http://127.0.0.1:1",
    gateway: inventoryUrl,
    nats: { natsUrl, namespace },
    legacyDatabaseUrl: legacyDb.url,
    out: out.stream,
    err: err.stream,
  });
  return { code, out: out.get(), err: err.get() };
}

const client = () => createClient(InventoryService, createGrpcTransport({ baseUrl: inventoryUrl }));

beforeAll(async () => {
  legacyDb = await createTestDatabase("mw_sync_legacy");
  inventoryDb = await createTestDatabase("mw_sync_inv");
  usersDb = await createTestDatabase("mw_sync_users");
  usql = postgres(usersDb.url, { max: 1, onnotice: () => {} });
  lsql = postgres(legacyDb.url, { max: 2, onnotice: () => {} });
  const common = { NATS_URL: natsUrl, EVENTS_NAMESPACE: namespace, PORT: "0", LOG_LEVEL: "info" };
  legacy = startProcess(process.execPath, [legacyMain], {
    env: {
      ...common,
      DATABASE_URL: legacyDb.url,
      LEGACY_TOKEN_SECRET: "s".repeat(40),
      LEGACY_SYNC_KEY: SYNC_KEY,
    },
  });
  await legacy.waitForLog((l) => l.msg === "listening", 60_000);
  // The seeded catalogue predates the migration: what the relay published of it is purged, so
  // inventory starts empty and only the backfill can bring it.
  // Both stages, in one snapshot: a row still in cdc_outbox (not yet translated) would be
  // published after the purge and reach inventory before the backfill.
  await waitFor(
    async () =>
      (
        await lsql<{ n: number }[]>`
          select ((select count(*) from cdc_outbox where sent_at is null)
               + (select count(*) from cdc_events where sent_at is null))::int as n`
      )[0]?.n === 0,
    { what: "legacy's relay to translate and publish the seed's captured rows", timeoutMs: 30_000 },
  );
  const nc = await connectNats(natsUrl, "test");
  for (const stream of ["LEGACY", "LEGACY_USERS"])
    await (await jetstreamManager(nc)).streams.purge(streamName(namespace, stream));
  await nc.close();
  inventory = startProcess(process.execPath, [inventoryMain], {
    env: { ...common, DATABASE_URL: inventoryDb.url, DISCOVERY: "static", CACHE_SHARED: "none" },
  });
  // The users service too: the backfill brings legacy's users there (their captures were purged).
  users = startProcess(process.execPath, [usersMain], {
    env: {
      ...common,
      DATABASE_URL: usersDb.url,
      DISCOVERY: "static",
      USERS_BOOTSTRAP_SECRET: "b".repeat(32),
      LEGACY_TOKEN_SECRET: "s".repeat(40),
      LEGACY_SYNC_KEY: SYNC_KEY,
    },
  });
  await users.waitForLog((l) => l.msg === "health changed" && l.status === "SERVING", 90_000);
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
}, 120_000);

afterAll(async () => {
  await inventory?.stop();
  await users?.stop();
  await legacy?.stop();
  await usql?.end({ timeout: 5 });
  await lsql?.end({ timeout: 5 });
  await deleteNamespaceStreams(namespace, natsUrl);
  await inventoryDb?.drop();
  await usersDb?.drop();
  await legacyDb?.drop();
});

describe("strangler data sync (legacy CDC -> inventory, reverse sync back)", () => {
  it("backfill copies legacy's catalogue into inventory, and a second backfill changes nothing", async () => {
    const [count] = await lsql<{ n: number }[]>`select count(*)::int as n from products`;
    const products = count?.n;
    expect((await client().listProducts({ pageSize: 100 })).products).toHaveLength(0);

    const first = await backfillOnce();
    expect(first.err).toBe("");
    expect(first.code).toBe(0);
    expect(first.out).toContain(`${products} created, 0 updated, 0 unchanged`);
    // Legacy's users too, with their ids: the users service applied every one of them.
    const legacyUsers = (await lsql<{ id: string }[]>`select id from users order by id`).map((r) => r.id);
    expect(legacyUsers.length).toBeGreaterThan(0);
    expect(first.out).toContain(`${legacyUsers.length} users snapshotted; the users service applied them`);
    const meshUsers = (await usql<{ id: string }[]>`select id from users order by id`).map((r) => r.id);
    expect(meshUsers).toEqual(legacyUsers);
    const [kettle] = await lsql<{ id: string; name: string; price_minor: string; on_hand: string }[]>`
      select p.id, p.name, p.price_minor, s.on_hand from products p join stock s on s.product_id = p.id
      where p.sku = 'LEG-KETTLE'`;
    const copied = (await client().getProduct({ id: kettle!.id })).product!;
    expect(copied).toMatchObject({ sku: "LEG-KETTLE", name: kettle!.name, onHand: BigInt(kettle!.on_hand) });
    expect(copied.price?.amountMinor).toBe(BigInt(kettle!.price_minor));

    const second = await backfillOnce();
    expect(second.code).toBe(0);
    expect(second.out).toContain(`0 created, 0 updated, ${products} unchanged`);
    expect(second.out).toContain(`${legacyUsers.length} users snapshotted; the users service applied them`);
    expect((await client().getProduct({ id: kettle!.id })).product?.version).toBe(copied.version);
    process.stdout.write(`backfill: ${first.out}second: ${second.out}`);
  }, 120_000);

  it("a product created and a stock change in legacy show up in inventory within the bound", async () => {
    const id = randomUUID();
    const t0 = Date.now();
    await lsql.begin(async (tx) => {
      await tx`insert into products (id, sku, name, price_minor, currency) values (${id}, ${`LEG-NEW-${id.slice(0, 6)}`}, 'Cosy', 1250, 'EUR')`;
      await tx`insert into stock (product_id, on_hand) values (${id}, 9)`;
    });
    const created = await waitFor(
      async () =>
        (
          await client()
            .getProduct({ id })
            .catch(() => undefined)
        )?.product?.onHand === 9n,
      { what: "the legacy product in inventory", timeoutMs: SYNC_BOUND_MS },
    ).then(() => Date.now() - t0);

    const t1 = Date.now();
    await lsql`update stock set on_hand = 4, updated_at = now() where product_id = ${id}`;
    await waitFor(async () => (await client().getProduct({ id })).product?.onHand === 4n, {
      what: "the legacy stock change in inventory",
      timeoutMs: SYNC_BOUND_MS,
    });
    const changed = Date.now() - t1;
    process.stdout.write(`legacy -> inventory: created in ${created} ms, stock change in ${changed} ms\n`);
    expect(created).toBeLessThan(SYNC_BOUND_MS);
    expect(changed).toBeLessThan(SYNC_BOUND_MS);
    // Applied is not yet acked (the ack goes out after the commit the read above saw): the
    // lag, pending plus ack-pending, reaches 0 a moment later.
    await waitFor(
      async () =>
        (await readSyncLag({ natsUrl, namespace })).find((l) => l.flow.startsWith("legacy"))?.behind === 0,
      { what: "the legacy flow's lag to be 0" },
    );
  });

  it("a late, older capture of a product is dropped (reordering and redelivery are harmless)", async () => {
    const [row] = await lsql<{ id: string; seq: string }[]>`
      select p.id, max(o.seq)::text as seq from products p join cdc_outbox o on o.aggregate_id = p.id
      where p.sku = 'LEG-TEAPOT' group by p.id`;
    const before = (await client().getProduct({ id: row!.id })).product!;
    const stale = createEnvelope(
      ProductChangedSchema,
      create(ProductChangedSchema, {
        productId: row!.id,
        sequence: BigInt(row!.seq) - 1n,
        sku: "LEG-TEAPOT",
        name: "An old name",
        price: { amountMinor: 1n, currency: "EUR" },
        onHand: 1n,
      }),
      { source: "meshwork/legacy", namespace },
    );
    const nc = await connectNats(natsUrl, "test");
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(stale))) h.set(k, v);
    // Twice under two ids: each is a distinct delivery the consumer must judge by sequence.
    await jetstream(nc).publish(stale.subject, stale.data, { msgID: stale.id, headers: h });
    await jetstream(nc).publish(stale.subject, stale.data, { msgID: randomUUID(), headers: h });
    await nc.close();
    await waitFor(async () => (await readSyncLag({ natsUrl, namespace }))[0]?.behind === 0, {
      what: "inventory to take the stale events",
    });
    const after = (await client().getProduct({ id: row!.id })).product!;
    expect(after).toEqual(before);
  });

  it("reverse sync: an inventory write reaches legacy's tables, and is not captured back (no echo)", async () => {
    const [row] = await lsql<{ id: string; on_hand: string }[]>`
      select p.id, s.on_hand from products p join stock s on s.product_id = p.id where p.sku = 'LEG-MUG'`;
    const captured = async () =>
      (
        await lsql<{ n: number }[]>`select count(*)::int as n from cdc_outbox where aggregate_id = ${row!.id}`
      )[0]?.n;
    const capturedBefore = await captured();
    const versionBefore = (await client().getProduct({ id: row!.id })).product!.version;
    const t0 = Date.now();
    await client().adjustStock({ productId: row!.id, delta: 5n });
    await waitFor(
      async () =>
        (await lsql<{ on_hand: string }[]>`select on_hand from stock where product_id = ${row!.id}`)[0]
          ?.on_hand === String(Number(row!.on_hand) + 5),
      { what: "the inventory stock change in legacy", timeoutMs: SYNC_BOUND_MS },
    );
    process.stdout.write(`inventory -> legacy: stock change in ${Date.now() - t0} ms\n`);
    // The reverse sync's write carried the origin marker: the trigger captured nothing, so
    // nothing travels back to inventory (its version moved once, by the adjustment).
    expect(await captured()).toBe(capturedBefore);
    // The orders flows have not started: no orders service runs here (so no legacy -> orders
    // consumer), and legacy does not make the orders service's stream itself (it only adds its
    // consumer once the owner has).
    await waitFor(
      async () =>
        (await readSyncLag({ natsUrl, namespace })).every((l) =>
          l.flow.includes("orders") ? l.behind === null : l.behind === 0,
        ),
      { what: "both flows idle" },
    );
    expect((await client().getProduct({ id: row!.id })).product!.version).toBe(versionBefore + 1n);
  });
});
