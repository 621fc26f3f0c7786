import { type AnyTransaction, type DatabaseHandle, prepareStatement } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { JetStreamClient } from "@nats-io/jetstream";
import { context, type Meter, propagation, type Tracer } from "@opentelemetry/api";
import { sql } from "drizzle-orm";
import { bigserial, customType, index, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { cloudEventHeaders, type EventEnvelope } from "./envelope.js";
import { AckPipeline } from "./outbox-relay/ack-pipeline.js";
import { createRelayMetrics } from "./outbox-relay/metrics.js";
import { type OutboxRow, publishRows } from "./outbox-relay/publish-row.js";
import { claimAndPublish, pruneSent, readBacklog } from "./outbox-relay/rows.js";
import { Wakeup } from "./outbox-relay/wakeup.js";

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
  toDriver: (v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength),
  fromDriver: (v) => (v instanceof Uint8Array ? v : Buffer.from(String(v).replace(/^\\x/, ""), "hex")),
});

/**
 * The outbox table, to include in a service's own Drizzle schema (its migrations create it):
 * `export const outbox = outboxTable();`. The relay publishes its rows in `seq` order.
 */
export function outboxTable(name = "outbox") {
  return pgTable(
    name,
    {
      seq: bigserial("seq", { mode: "number" }).primaryKey(),
      id: uuid("id").notNull().unique(`${name}_id_unique`),
      subject: text("subject").notNull(),
      type: text("type").notNull(),
      headers: jsonb("headers").$type<Record<string, string>>().notNull(),
      payload: bytea("payload").notNull(),
      createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
      sentAt: timestamp("sent_at", { withTimezone: true, mode: "date" }),
    },
    (t) => [index(`${name}_unsent_idx`).on(t.seq).where(sql`${t.sentAt} is null`)],
  );
}

export type OutboxTable = ReturnType<typeof outboxTable>;

type AnyTx = AnyTransaction;

/**
 * Writes events into the outbox in the caller's transaction, so they exist if and only if the
 * state change they describe commits. The current trace context is stored with each row, so the
 * publish and every consumer join the trace of the request that caused the event. A
 * `NOTIFY` (delivered on commit) wakes the relay at once.
 */
export async function enqueueEvents(
  tx: AnyTx,
  table: OutboxTable,
  events: readonly EventEnvelope[],
): Promise<void> {
  if (events.length === 0) return;
  const trace: Record<string, string> = {};
  propagation.inject(context.active(), trace);
  const rows = events.map((e) => ({
    id: e.id,
    subject: e.subject,
    type: e.type,
    headers: { ...cloudEventHeaders(e), ...trace },
    payload: e.data,
    createdAt: e.time,
  }));
  if (rows.length === 1) {
    await insertOne(table).execute(tx, rows[0] as (typeof rows)[number]);
    return;
  }
  await tx
    .insert(table)
    .values(rows)
    // The NOTIFY rides in the RETURNING list: one round trip, not a second `select pg_notify`.
    // Postgres sends identical notifications of one transaction once, at commit.
    .returning({ notified: sql`pg_notify(${notifyChannel(table)}, '')` });
}

/** The insert of one event (the usual case), built by Drizzle once per outbox table. */
function prepareInsertOne(table: OutboxTable) {
  const placeholder = (name: string) => sql.placeholder(name) as unknown as string;
  return prepareStatement(`${notifyChannel(table)}_insert_one`, (q) =>
    q
      .insert(table)
      .values({
        id: placeholder("id"),
        subject: placeholder("subject"),
        type: placeholder("type"),
        headers: placeholder("headers") as unknown as Record<string, string>,
        payload: placeholder("payload") as unknown as Uint8Array,
        createdAt: placeholder("createdAt") as unknown as Date,
      })
      .returning({ notified: sql`pg_notify(${notifyChannel(table)}, '')` }),
  );
}
const insertOneStatements = new WeakMap<OutboxTable, ReturnType<typeof prepareInsertOne>>();

function insertOne(table: OutboxTable) {
  let statement = insertOneStatements.get(table);
  if (!statement) {
    statement = prepareInsertOne(table);
    insertOneStatements.set(table, statement);
  }
  return statement;
}

function notifyChannel(table: OutboxTable): string {
  // biome-ignore lint/suspicious/noExplicitAny: drizzle keeps the table name behind a symbol
  const name = (table as any)[Symbol.for("drizzle:Name")] as string;
  return `${name}_events`;
}

export interface OutboxRelayOptions {
  // biome-ignore lint/suspicious/noExplicitAny: the relay works with any service's schema
  database: DatabaseHandle<any>;
  table: OutboxTable;
  js: JetStreamClient;
  logger: Logger;
  tracer: Tracer;
  meter: Meter;
  batchSize: number;
  pollMs: number;
  /**
   * How long sent rows are kept (then pruned, once a minute). 0 keeps none: the relay deletes
   * the rows it publishes in the statement that claims them, which costs Postgres about half the
   * CPU and WAL per event of marking them sent (and pruning them later). The unique index on
   * the event id then no longer refuses an id enqueued again after its row was published: such a
   * repeat is published, and only the stream's duplicate window and the consumers' inboxes drop
   * it (as they drop the repeats a lost mark causes).
   */
  retentionMs: number;
  /** How long to wait for the broker's acks of a batch's publishes. Default 5 s. */
  publishTimeoutMs?: number;
}

/** Publishes what the outbox holds. */
export interface OutboxRelay {
  /** Starts the loop: LISTEN for new rows, poll as a fallback, retry while NATS is away. */
  start(): Promise<void>;
  /** Stops after the batch in progress. */
  stop(): Promise<void>;
  /** Claims and publishes one batch; resolves with how many rows it sent. */
  drainOnce(): Promise<number>;
  /** Deletes rows sent longer ago than the retention period (the loop does it every minute). */
  prune(): Promise<number>;
  /** Unsent rows and the age of the oldest (refreshed every loop turn). */
  readonly backlog: { count: number; oldestAgeSeconds: number };
}

/**
 * Creates the relay of one service's outbox. Each turn claims up to `batchSize` unsent rows
 * with `FOR UPDATE SKIP LOCKED` (so several instances never publish the same row at once) and
 * marks them sent (or, with `retentionMs` 0, deletes them) in the same statement, publishes them with `Nats-Msg-Id` = event id (back to
 * back, acks pipelined on one reply subscription), waits for every ack, and only then commits,
 * without waiting for the WAL flush (a lost mark or delete only means a repeated publish); a
 * publish that fails rolls the mark or delete back. If the process dies mid-batch the rows stay unsent and are published again:
 * the stream's duplicate window drops the repeats, and consumers' inboxes absorb the rest.
 */
export function createOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { database, table, js, logger, tracer } = options;
  const db = database.db;
  const metrics = createRelayMetrics(options.meter);
  const { backlog } = metrics;
  const publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
  const pipeline = AckPipeline.of(js);
  const publish = (rows: OutboxRow[]) => publishRows(pipeline, tracer, rows, publishTimeoutMs);
  const wakeup = new Wakeup();
  let running = false;
  let loop: Promise<void> | undefined;
  let unlisten: (() => Promise<void>) | undefined;
  let lastPrune = 0;
  let lastRefresh = 0;

  async function drainOnce(): Promise<number> {
    const sent = await claimAndPublish(db, table, options.batchSize, publish, options.retentionMs <= 0);
    if (sent > 0) metrics.published.add(sent);
    return sent;
  }

  // The backlog query runs at most once a second while events flow (a relay woken for every few
  // rows would otherwise run it once per batch), and at once when a claim found nothing while a
  // backlog is on record, so an idle relay soon reports the true backlog.
  async function refreshBacklog(claimedNothing: boolean): Promise<void> {
    const settled = claimedNothing && (backlog.count > 0 || backlog.oldestAgeSeconds > 0);
    if (!settled && Date.now() - lastRefresh < 1_000) return;
    lastRefresh = Date.now();
    Object.assign(backlog, await readBacklog(db, table));
  }

  function prune(): Promise<number> {
    lastPrune = Date.now();
    return pruneSent(db, table, options.retentionMs);
  }

  async function run(): Promise<void> {
    const isRunning = () => running;
    let failed = 0;
    while (running) {
      wakeup.clear();
      try {
        const sent = await drainOnce();
        if (failed > 0) logger.info({ after: failed }, "outbox relay recovered");
        failed = 0;
        await refreshBacklog(sent === 0);
        if (Date.now() - lastPrune >= 60_000) await prune();
        if (sent >= options.batchSize) continue;
        await wakeup.sleep(options.pollMs, isRunning);
      } catch (err) {
        failed++;
        metrics.failures.add(1);
        if (failed === 1 || failed % 20 === 0) {
          logger.warn({ err: String(err), failures: failed }, "outbox relay could not publish; will retry");
        }
        await refreshBacklog(false).catch(() => {});
        await wakeup.sleep(Math.min(5_000, 100 * 2 ** Math.min(failed, 6)), isRunning);
      }
    }
  }

  return {
    backlog,
    drainOnce,
    prune,
    async start() {
      if (running) return;
      running = true;
      unlisten = await database.listen(notifyChannel(table), () => wakeup.notify());
      loop = run();
    },
    async stop() {
      running = false;
      wakeup.interrupt();
      await loop;
      pipeline.close();
      await unlisten?.();
    },
  };
}
