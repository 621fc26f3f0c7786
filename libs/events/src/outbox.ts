import type { AnyTransaction, DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import {
  context,
  type Meter,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { and, asc, isNotNull, isNull, lt, sql } from "drizzle-orm";
import { bigserial, customType, index, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { cloudEventHeaders, type EventEnvelope } from "./envelope.js";

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
  await tx
    .insert(table)
    .values(
      events.map((e) => ({
        id: e.id,
        subject: e.subject,
        type: e.type,
        headers: { ...cloudEventHeaders(e), ...trace },
        payload: e.data,
        createdAt: e.time,
      })),
    )
    // The NOTIFY rides in the RETURNING list: one round trip, not a second `select pg_notify`.
    // Postgres sends identical notifications of one transaction once, at commit.
    .returning({ notified: sql`pg_notify(${notifyChannel(table)}, '')` });
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
  retentionMs: number;
  /** How long to wait for the broker's ack of one publish. Default 5 s. */
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
 * with `FOR UPDATE SKIP LOCKED` (so several instances never publish the same row at once),
 * publishes them with `Nats-Msg-Id` = event id, waits for every ack, and marks them sent in the
 * same transaction, committed without waiting for the WAL flush (a lost mark only means a
 * repeated publish). If the process dies mid-batch the rows stay unsent and are published again:
 * the stream's duplicate window drops the repeats, and consumers' inboxes absorb the rest.
 */
export function createOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { database, table, js, logger, tracer, meter } = options;
  const db = database.db;
  const published = meter.createCounter("outbox.published", { description: "Events published by the relay" });
  const failures = meter.createCounter("outbox.publish_failures", {
    description: "Relay batches that failed",
  });
  const backlog = { count: 0, oldestAgeSeconds: 0 };
  meter.createObservableGauge("outbox.backlog", { description: "Unsent outbox rows" }).addCallback((r) => {
    r.observe(backlog.count);
  });
  meter
    .createObservableGauge("outbox.oldest_age", {
      description: "Age of the oldest unsent outbox row",
      unit: "s",
    })
    .addCallback((r) => r.observe(backlog.oldestAgeSeconds));

  let running = false;
  let loop: Promise<void> | undefined;
  let unlisten: (() => Promise<void>) | undefined;
  let pending = false;
  let wake: (() => void) | undefined;
  let lastPrune = 0;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (pending || !running) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  const notify = () => {
    pending = true;
    wake?.();
  };

  async function publishRow(row: typeof table.$inferSelect): Promise<void> {
    const parent = propagation.extract(ROOT_CONTEXT, row.headers);
    const span = tracer.startSpan(
      `publish ${row.subject}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "send",
          "messaging.destination.name": row.subject,
          "messaging.message.id": row.id,
          "cloudevents.event_type": row.type,
        },
      },
      parent,
    );
    const h = natsHeaders();
    for (const [k, v] of Object.entries(row.headers))
      if (k !== "traceparent" && k !== "tracestate") h.set(k, v);
    propagation.inject(trace.setSpan(parent, span), h, { set: (c, k, v) => c.set(k, v) });
    try {
      const ack = await js.publish(row.subject, row.payload, {
        msgID: row.id,
        headers: h,
        timeout: options.publishTimeoutMs ?? 5_000,
      });
      span.setAttribute("messaging.nats.duplicate", ack.duplicate);
      span.setAttribute("messaging.nats.stream.sequence", ack.seq);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      span.end();
    }
  }

  async function drainOnce(): Promise<number> {
    const sent = await db.transaction(async (tx) => {
      const rows = await tx
        .select()
        .from(table)
        .where(isNull(table.sentAt))
        .orderBy(asc(table.seq))
        .limit(options.batchSize)
        .for("update", { skipLocked: true });
      if (rows.length === 0) return 0;
      // This transaction only marks rows as sent. If a database crash loses that mark, the rows
      // are published again, which the broker's de-duplication and the consumers' inboxes
      // absorb; so its commit need not wait for the WAL flush (tens of ms when the disk
      // stalls), which would hold up the next batch. (Set here, not for empty polls: it only
      // matters at commit.)
      await tx.execute(sql`set local synchronous_commit = off`);
      await Promise.all(rows.map(publishRow));
      await tx
        .update(table)
        .set({ sentAt: sql`now()` })
        // The claimed rows as one array parameter: one statement shape for every batch size.
        .where(sql`${table.seq} = any(${sql.param(rows.map((r) => r.seq))}::bigint[])`);
      return rows.length;
    });
    if (sent > 0) published.add(sent);
    return sent;
  }

  // The backlog query runs at most once a second while events flow (a relay woken for every few
  // rows would otherwise run it once per batch), and at once when a claim found nothing while a
  // backlog is on record, so an idle relay soon reports the true backlog.
  let lastRefresh = 0;
  async function refreshBacklog(claimedNothing: boolean): Promise<void> {
    const settled = claimedNothing && (backlog.count > 0 || backlog.oldestAgeSeconds > 0);
    if (!settled && Date.now() - lastRefresh < 1_000) return;
    lastRefresh = Date.now();
    const [row] = await db
      .select({
        count: sql<number>`count(*)::int`,
        oldest: sql<string | null>`min(${table.createdAt})::text`,
      })
      .from(table)
      .where(isNull(table.sentAt));
    backlog.count = row?.count ?? 0;
    backlog.oldestAgeSeconds = row?.oldest ? Math.max(0, (Date.now() - Date.parse(row.oldest)) / 1000) : 0;
  }

  async function prune(): Promise<number> {
    lastPrune = Date.now();
    const cutoff = new Date(Date.now() - options.retentionMs);
    const deleted = await db
      .delete(table)
      .where(and(isNotNull(table.sentAt), lt(table.sentAt, cutoff)))
      .returning({ seq: table.seq });
    return deleted.length;
  }

  async function run(): Promise<void> {
    let failed = 0;
    while (running) {
      pending = false;
      try {
        const sent = await drainOnce();
        if (failed > 0) logger.info({ after: failed }, "outbox relay recovered");
        failed = 0;
        await refreshBacklog(sent === 0);
        if (Date.now() - lastPrune >= 60_000) await prune();
        if (sent >= options.batchSize) continue;
        await sleep(options.pollMs);
      } catch (err) {
        failed++;
        failures.add(1);
        if (failed === 1 || failed % 20 === 0) {
          logger.warn({ err: String(err), failures: failed }, "outbox relay could not publish; will retry");
        }
        await refreshBacklog(false).catch(() => {});
        await sleep(Math.min(5_000, 100 * 2 ** Math.min(failed, 6)));
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
      unlisten = await database.listen(notifyChannel(table), notify);
      loop = run();
    },
    async stop() {
      running = false;
      wake?.();
      await loop;
      await unlisten?.();
    },
  };
}
