import { connectNats, type NatsCredentials, streamName } from "@meshwork/events";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import postgres from "postgres";

/**
 * The data flows of the migration, each a durable consumer: legacy's change data capture into
 * inventory (the catalogue's reads), and inventory's events back into legacy (the reverse sync,
 * once its writes are cut over). The routes a flow feeds show its lag in `strangler status`.
 */
export const SYNC_FLOWS = [
  {
    name: "legacy -> inventory (CDC)",
    stream: "LEGACY",
    durable: "inventory-legacy-sync",
    routes: ["GetProduct", "ListProducts"],
  },
  {
    name: "legacy -> users (CDC)",
    stream: "LEGACY_USERS",
    durable: "users-legacy-sync",
    routes: ["GetUser"],
  },
  { name: "inventory -> legacy (reverse)", stream: "INVENTORY", durable: "legacy-reverse-sync", routes: [] },
  // Legacy's copy of the mesh's orders (once POST /api/orders is cut over): its lag is how far a
  // shadowed or legacy-answered orders read can be behind.
  {
    name: "orders -> legacy (reverse)",
    stream: "ORDERS",
    durable: "legacy-order-sync",
    routes: ["GetOrder", "ListOrders"],
  },
] as const;

export interface SyncLag {
  flow: string;
  routes: readonly string[];
  /** Events on the stream not yet applied (pending plus delivered and unacknowledged); null: no consumer yet. */
  behind: number | null;
  /** Age of the oldest event not applied yet, in seconds (0 when in sync). */
  oldestSeconds: number;
}

export interface NatsTarget {
  natsUrl: string;
  natsCredentials?: NatsCredentials;
  namespace: string;
}

async function flowLag(jsm: JetStreamManager, stream: string, durable: string): Promise<number> {
  const info = await jsm.consumers.info(stream, durable);
  return info.num_pending + info.num_ack_pending;
}

/** Reads each flow's lag from the broker: what its consumer has not applied, and for how long. */
export async function readSyncLag(target: NatsTarget): Promise<SyncLag[]> {
  const nc = await connectNats(target.natsUrl, "meshctl", target.natsCredentials);
  try {
    const jsm = await jetstreamManager(nc);
    const out: SyncLag[] = [];
    for (const f of SYNC_FLOWS) {
      const stream = streamName(target.namespace, f.stream);
      let behind: number | null = null;
      let oldestSeconds = 0;
      try {
        behind = await flowLag(jsm, stream, f.durable);
        if (behind > 0) {
          const info = await jsm.consumers.info(stream, f.durable);
          const first = await jsm.streams.getMessage(stream, { seq: info.ack_floor.stream_seq + 1 });
          if (first) oldestSeconds = Math.max(0, (Date.now() - first.time.getTime()) / 1000);
        }
      } catch {
        // No such consumer: the flow has not started (its service never ran in this mesh).
      }
      out.push({ flow: f.name, routes: f.routes, behind, oldestSeconds });
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** `in sync`, `3 behind, oldest 1.2s`, or `-` for a flow that has not started. */
export function formatLag(l: SyncLag): string {
  if (l.behind === null) return "-";
  if (l.behind === 0) return "in sync";
  return `${l.behind} behind, oldest ${l.oldestSeconds.toFixed(1)}s`;
}

/** The products the new side holds, id -> version (ListProducts, a public read, through the gateway). */
export type CatalogueVersions = Map<string, number>;

export interface BackfillOptions extends NatsTarget {
  /** The legacy monolith's database (`LEGACY_DATABASE_URL`). */
  legacyDatabaseUrl: string;
  /** Reads the new side's catalogue, to say what the backfill changed there. */
  catalogue: () => Promise<CatalogueVersions>;
  batchSize?: number;
  timeoutMs?: number;
  out: NodeJS.WritableStream;
}

export interface BackfillReport {
  products: number;
  /** Legacy's users snapshotted (to the users service, with their legacy ids and password hashes). */
  users: number;
  /** Whether the users service's consumer applied them (false: it has no consumer on LEGACY yet). */
  usersApplied: boolean;
  firstSeq: number | null;
  lastSeq: number | null;
  created: number;
  updated: number;
  unchanged: number;
  appliedInMs: number;
}

/**
 * `meshctl strangler backfill`: loads the new inventory with legacy's catalogue through the same
 * road the CDC takes. Each batch of products (in id order) is written into legacy's cdc_outbox
 * as snapshot rows in one transaction; the relay publishes them and inventory applies them by
 * capture sequence, so a product already there with the same state is left alone and one that
 * changed since is brought up to date. Interrupted, it is simply run again (what was applied is
 * unchanged the second time); it waits until inventory has applied everything and says what
 * that changed.
 */
export async function backfill(o: BackfillOptions): Promise<BackfillReport> {
  const before = await o.catalogue();
  const sql = postgres(o.legacyDatabaseUrl, { max: 1, onnotice: () => {} });
  let products = 0;
  let users = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  const ids: string[] = [];
  const started = Date.now();
  try {
    let cursor = "00000000-0000-0000-0000-000000000000";
    for (;;) {
      const rows = await sql.begin(
        (tx) => tx<{ seq: string; aggregate_id: string }[]>`
          insert into cdc_outbox (event_type, aggregate_id, payload)
          select 'legacy.product.snapshot', p.id, cdc_product_state(p.id)
            from products p where p.id > ${cursor} order by p.id limit ${o.batchSize ?? 500}
          returning seq, aggregate_id`,
      );
      if (rows.length === 0) break;
      await sql`select pg_notify('cdc_outbox', '')`;
      products += rows.length;
      ids.push(...rows.map((r) => r.aggregate_id));
      const seqs = rows.map((r) => Number(r.seq));
      firstSeq = Math.min(firstSeq ?? Number.POSITIVE_INFINITY, ...seqs);
      lastSeq = Math.max(lastSeq ?? 0, ...seqs);
      cursor =
        rows
          .map((r) => r.aggregate_id)
          .sort()
          .at(-1) ?? cursor;
      o.out.write(`  ${products} products snapshotted (through ${cursor})\n`);
    }
    const snapped = await snapshotUsers(sql, o.batchSize ?? 500, o.out);
    users = snapped.users;
    // The reported range is the products'; the wait below covers the users' rows too.
    const waitSeq = Math.max(lastSeq ?? 0, snapped.lastSeq ?? 0);
    const deadline = Date.now() + (o.timeoutMs ?? 60_000);
    // 1. Relayed: every snapshot row has left legacy's outboxes (translated, then published).
    for (;;) {
      const [left] = await sql<{ n: number }[]>`
        select (select count(*) from cdc_outbox where sent_at is null and seq <= ${waitSeq})::int
             + (select count(*) from cdc_events where sent_at is null)::int as n`;
      if ((left?.n ?? 0) === 0) break;
      if (Date.now() > deadline)
        throw new Error(
          `${left?.n} snapshot rows still unsent in legacy's outbox: is legacy's relay running?`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
  // 2. Applied: inventory's consumer has nothing pending on LEGACY (and users', when it runs, on
  // LEGACY_USERS).
  let usersApplied = false;
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const nc = await connectNats(o.natsUrl, "meshctl", o.natsCredentials);
  try {
    const jsm = await jetstreamManager(nc);
    const stream = streamName(o.namespace, "LEGACY");
    usersApplied = await waitUsersApplied(jsm, streamName(o.namespace, "LEGACY_USERS"), users, deadline);
    for (;;) {
      const behind = await flowLag(jsm, stream, "inventory-legacy-sync").catch(() => null);
      if (behind === 0) break;
      if (Date.now() > deadline)
        throw new Error(
          behind === null
            ? "inventory has no consumer on the LEGACY stream: is inventory running?"
            : `inventory still has ${behind} legacy changes to apply`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await nc.close();
  }
  const appliedInMs = Date.now() - started;
  const after = await o.catalogue();
  let created = 0;
  let updated = 0;
  let unchanged = 0;
  for (const id of ids) {
    const was = before.get(id);
    const version = after.get(id);
    if (version === undefined) continue;
    if (was === undefined) created++;
    else if (was !== version) updated++;
    else unchanged++;
  }
  return { products, users, usersApplied, firstSeq, lastSeq, created, updated, unchanged, appliedInMs };
}

/** Snapshots every legacy user into cdc_outbox (id order, batches): the users service's backfill. */
async function snapshotUsers(
  sql: postgres.Sql,
  batchSize: number,
  out: NodeJS.WritableStream,
): Promise<{ users: number; firstSeq: number | null; lastSeq: number | null }> {
  let users = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  let cursor = "00000000-0000-0000-0000-000000000000";
  for (;;) {
    const rows = await sql.begin(
      (tx) => tx<{ seq: string; aggregate_id: string }[]>`
        insert into cdc_outbox (event_type, aggregate_id, payload)
        select 'legacy.user.snapshot', u.id, cdc_user_state(u.id)
          from users u where u.id > ${cursor} order by u.id limit ${batchSize}
        returning seq, aggregate_id`,
    );
    if (rows.length === 0) break;
    await sql`select pg_notify('cdc_outbox', '')`;
    users += rows.length;
    const seqs = rows.map((r) => Number(r.seq));
    firstSeq ??= Math.min(...seqs);
    lastSeq = Math.max(lastSeq ?? 0, ...seqs);
    cursor =
      rows
        .map((r) => r.aggregate_id)
        .sort()
        .at(-1) ?? cursor;
    out.write(`  ${users} users snapshotted (through ${cursor})\n`);
  }
  return { users, firstSeq, lastSeq };
}

/**
 * Waits until the users service's consumer has applied what is on LEGACY_USERS; false at once when
 * it has no consumer (the users service never ran against this stream), so products still load.
 */
async function waitUsersApplied(
  jsm: JetStreamManager,
  stream: string,
  users: number,
  deadline: number,
): Promise<boolean> {
  if (users === 0) return true;
  for (;;) {
    const behind = await flowLag(jsm, stream, "users-legacy-sync").catch(() => null);
    if (behind === null) return false;
    if (behind === 0) return true;
    if (Date.now() > deadline) throw new Error(`users still has ${behind} legacy users to apply`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
