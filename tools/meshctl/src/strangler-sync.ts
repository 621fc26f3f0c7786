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
  // Legacy's own orders into the mesh: how far a cut-over orders read can be behind legacy.
  {
    name: "legacy -> orders (CDC)",
    stream: "LEGACY",
    durable: "orders-legacy-sync",
    routes: ["GetOrder", "ListOrders"],
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
  /** Legacy's own orders snapshotted (to the orders service, as terminal orders under their ids). */
  orders: number;
  /** Whether the orders service's consumer applied them (false: it has no consumer on LEGACY yet). */
  ordersApplied: boolean;
  firstSeq: number | null;
  lastSeq: number | null;
  created: number;
  updated: number;
  unchanged: number;
  appliedInMs: number;
}

/** One kind of legacy row the backfill snapshots into cdc_outbox. */
export interface SnapshotKind {
  /** For the progress lines: "products". */
  name: string;
  eventType: string;
  table: string;
  /** The capture's state function (the triggers' own, so a snapshot has a capture's shape). */
  state: string;
  /**
   * The tables the state is read from, locked IN SHARE MODE in the snapshot's transaction
   * (review finding 7). Without it a writer whose capture took sequence N before it committed
   * left the snapshot to read the row as it was before and write it under a higher sequence, so
   * the older state won in the mesh. SHARE waits for writers in flight (their captures commit
   * first, below the snapshot's sequence) and holds new ones until the snapshot commits (their
   * captures come after, above it): every snapshot row is the committed state at its sequence.
   */
  locks: string;
  /** Rows left out (SQL over `t`). */
  where?: string;
}

export const SNAPSHOTS = {
  products: {
    name: "products",
    eventType: "legacy.product.snapshot",
    table: "products",
    state: "cdc_product_state",
    locks: "products, stock",
  },
  users: {
    name: "users",
    eventType: "legacy.user.snapshot",
    table: "users",
    state: "cdc_user_state",
    locks: "users",
  },
  // The mesh's own orders (written into legacy by its order sync) are not sent back.
  orders: {
    name: "orders",
    eventType: "legacy.order.snapshot",
    table: "orders",
    state: "cdc_order_state",
    locks: "orders, order_items",
    where: "t.idempotency_key NOT LIKE 'mesh:%'",
  },
} as const satisfies Record<string, SnapshotKind>;

const DEADLOCK = "40P01";

/**
 * One batch of `kind` after `cursor` (id order) into cdc_outbox, in one transaction under the
 * kind's SHARE locks. A deadlock with a legacy writer (one that takes a second table after the
 * snapshot took the first) is retried.
 */
export async function snapshotBatch(
  sql: postgres.Sql,
  kind: SnapshotKind,
  cursor: string,
  batchSize: number,
): Promise<{ seq: string; aggregate_id: string }[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await sql.begin(async (tx) => {
        await tx.unsafe(`LOCK TABLE ${kind.locks} IN SHARE MODE`);
        return tx.unsafe<{ seq: string; aggregate_id: string }[]>(
          `INSERT INTO cdc_outbox (event_type, aggregate_id, payload)
           SELECT $1, t.id, ${kind.state}(t.id) FROM ${kind.table} t
            WHERE t.id > $2 ${kind.where ? `AND ${kind.where}` : ""}
            ORDER BY t.id LIMIT $3
           RETURNING seq, aggregate_id`,
          [kind.eventType, cursor, batchSize],
        );
      });
    } catch (e) {
      if ((e as { code?: string }).code !== DEADLOCK || attempt >= 5) throw e;
    }
  }
}

/** Snapshots every row of `kind` into cdc_outbox (id order, batches). */
export async function snapshotAll(
  sql: postgres.Sql,
  kind: SnapshotKind,
  batchSize: number,
  out: NodeJS.WritableStream,
): Promise<{ count: number; ids: string[]; firstSeq: number | null; lastSeq: number | null }> {
  let count = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  const ids: string[] = [];
  let cursor = "00000000-0000-0000-0000-000000000000";
  for (;;) {
    const rows = await snapshotBatch(sql, kind, cursor, batchSize);
    if (rows.length === 0) break;
    await sql`select pg_notify('cdc_outbox', '')`;
    count += rows.length;
    ids.push(...rows.map((r) => r.aggregate_id));
    const seqs = rows.map((r) => Number(r.seq));
    firstSeq = Math.min(firstSeq ?? Number.POSITIVE_INFINITY, ...seqs);
    lastSeq = Math.max(lastSeq ?? 0, ...seqs);
    cursor =
      rows
        .map((r) => r.aggregate_id)
        .sort()
        .at(-1) ?? cursor;
    out.write(`  ${count} ${kind.name} snapshotted (through ${cursor})\n`);
  }
  return { count, ids, firstSeq, lastSeq };
}

/**
 * `meshctl strangler backfill`: loads the new services with legacy's data through the same road
 * the CDC takes: its catalogue into inventory, its users into users, its orders into orders.
 * Each batch (in id order) is written into legacy's cdc_outbox as snapshot rows in one
 * transaction (see {@link SnapshotKind.locks}); the relay publishes them and each service applies
 * them by capture sequence, so a row already there with the same state is left alone and one that
 * changed since is brought up to date. Interrupted, it is simply run again (what was applied is
 * unchanged the second time); it waits until the services have applied everything and says what
 * that changed in the catalogue.
 */
export async function backfill(o: BackfillOptions): Promise<BackfillReport> {
  const before = await o.catalogue();
  const sql = postgres(o.legacyDatabaseUrl, { max: 1, onnotice: () => {} });
  const batch = o.batchSize ?? 500;
  const started = Date.now();
  let products: Awaited<ReturnType<typeof snapshotAll>>;
  let users = 0;
  let orders = 0;
  try {
    products = await snapshotAll(sql, SNAPSHOTS.products, batch, o.out);
    const u = await snapshotAll(sql, SNAPSHOTS.users, batch, o.out);
    const r = await snapshotAll(sql, SNAPSHOTS.orders, batch, o.out);
    users = u.count;
    orders = r.count;
    // The reported range is the products'; the wait below covers the users' and orders' rows too.
    const waitSeq = Math.max(products.lastSeq ?? 0, u.lastSeq ?? 0, r.lastSeq ?? 0);
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
  // 2. Applied: inventory's consumer (and orders', when it runs) has nothing pending on LEGACY,
  // and users' (when it runs) nothing on LEGACY_USERS.
  let usersApplied = false;
  let ordersApplied = false;
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const nc = await connectNats(o.natsUrl, "meshctl", o.natsCredentials);
  try {
    const jsm = await jetstreamManager(nc);
    const stream = streamName(o.namespace, "LEGACY");
    usersApplied = await waitApplied(
      jsm,
      streamName(o.namespace, "LEGACY_USERS"),
      "users-legacy-sync",
      users,
      deadline,
    );
    ordersApplied = await waitApplied(jsm, stream, "orders-legacy-sync", orders, deadline);
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
  for (const id of products.ids) {
    const was = before.get(id);
    const version = after.get(id);
    if (version === undefined) continue;
    if (was === undefined) created++;
    else if (was !== version) updated++;
    else unchanged++;
  }
  return {
    products: products.count,
    users,
    usersApplied,
    orders,
    ordersApplied,
    firstSeq: products.firstSeq,
    lastSeq: products.lastSeq,
    created,
    updated,
    unchanged,
    appliedInMs,
  };
}

/**
 * Waits until a service's consumer (`durable`) has applied what is on `stream`; false at once when
 * it has no consumer (the service never ran against this stream), so products still load.
 */
async function waitApplied(
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  rows: number,
  deadline: number,
): Promise<boolean> {
  if (rows === 0) return true;
  for (;;) {
    const behind = await flowLag(jsm, stream, durable).catch(() => null);
    if (behind === null) return false;
    if (behind === 0) return true;
    if (Date.now() > deadline) throw new Error(`${durable} still has ${behind} legacy changes to apply`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
