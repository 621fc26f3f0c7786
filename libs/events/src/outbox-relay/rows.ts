import { type DatabaseHandle, prepareStatement } from "@meshwork/db";
import { and, asc, isNotNull, isNull, lt, sql } from "drizzle-orm";
import type { OutboxTable } from "../outbox.js";
import type { OutboxRow } from "./publish-row.js";

// biome-ignore lint/suspicious/noExplicitAny: the relay works with any service's schema
type AnyDb = DatabaseHandle<any>["db"];

/**
 * Claims up to `batchSize` unsent rows with `FOR UPDATE SKIP LOCKED` (so several instances never
 * publish the same row at once) and marks them sent in one statement, hands them to `publish` (all
 * at once, in `seq` order), and commits once it resolved; if it rejects, the transaction rolls
 * back and the rows are unsent again. Resolves with how many rows it sent.
 *
 * Three round trips a turn (begin; the setting and the claim, pipelined; commit) where claiming,
 * then marking took five: fewer wake-ups of the relay and its backend per batch, which is most of
 * a turn when batches are small (events trickling in) and the machine is loaded.
 *
 * With `deleteSent` (an outbox that keeps no sent rows, `retentionMs` 0) the claim deletes the
 * rows instead of marking them: the same lock, the same rollback on a failed publish, but two
 * WAL records per row (the row lock `FOR UPDATE` writes, then the delete; about 110 bytes) where
 * the mark writes five (the lock, a new row version and its entries in the primary key and the
 * id index: it cannot be a HOT update, `sent_at` is in the unsent index's predicate; about 800
 * bytes), and no prune later. `events-floors.js`, 20000 events, medians of 3: 7 us of Postgres CPU per event
 * against 17; `events-relay.js` (this relay alone, alternated, medians of 3): Postgres 6.5 us per
 * row against 14.5, 11730 rows/s against 9150.
 */
export async function claimAndPublish(
  db: AnyDb,
  table: OutboxTable,
  batchSize: number,
  publish: (rows: OutboxRow[]) => Promise<void>,
  deleteSent = false,
): Promise<number> {
  const claim = claimStatement(table, deleteSent);
  return db.transaction(async (tx) => {
    // This transaction only marks rows as sent (or deletes them). If a database crash loses
    // that mark or delete, the rows are published again, which the broker's de-duplication and the consumers' inboxes
    // absorb; so its commit need not wait for the WAL flush (tens of ms when the disk
    // stalls), which would hold up the next batch. Sent now (`execute()`), and the claim right
    // behind it on the same connection: one round trip for both.
    const asyncCommit = tx.execute(sql`set local synchronous_commit = off`).execute();
    const [, rows] = await Promise.all([asyncCommit, claim.execute(tx, { limit: batchSize })]);
    if (rows.length === 0) return 0;
    rows.sort((a, b) => a.seq - b.seq); // RETURNING follows no order
    await publish(rows);
    return rows.length;
  });
}

type ClaimStatement = ReturnType<typeof prepareClaim>;
const claimStatements = new WeakMap<OutboxTable, { mark?: ClaimStatement; delete?: ClaimStatement }>();

/** The claim of a table (marking or deleting), built by Drizzle once per outbox table and kind. */
function claimStatement(table: OutboxTable, deleteSent: boolean): ClaimStatement {
  let statements = claimStatements.get(table);
  if (!statements) {
    statements = {};
    claimStatements.set(table, statements);
  }
  const kind = deleteSent ? "delete" : "mark";
  statements[kind] ??= prepareClaim(table, deleteSent);
  return statements[kind];
}

/**
 * The claim: the batch's rows locked with `FOR UPDATE SKIP LOCKED`, marked sent (or deleted),
 * returned. Prepared once (its text and column decoders; the batch size a parameter): Drizzle's
 * building of it per batch and its generic row mapping were 6% of the relay's CPU in the events
 * bench (profile of main e517c13). The relay's own CPU for claiming 20 x 256 rows with a no-op
 * publish, per row, alternated, medians of 8, load ~20: 18.1 -> 13.6 and 18.3 -> 14.8 us.
 */
function prepareClaim(table: OutboxTable, deleteSent: boolean) {
  const name = `${tableName(table)}_claim_${deleteSent ? "delete" : "mark"}`;
  return prepareStatement<OutboxRow & { seq: number }>(name, (q) => {
    const unsent = q
      .select({ seq: table.seq })
      .from(table)
      .where(isNull(table.sentAt))
      .orderBy(asc(table.seq))
      .limit(sql.placeholder("limit") as unknown as number)
      .for("update", { skipLocked: true });
    // `= any(array(...))` runs the locking subquery once, whatever plan the update gets. Only the
    // columns a publish needs come back: `created_at` would be parsed into a Date for nothing.
    const claimed = sql`${table.seq} = any(array(${unsent}))`;
    const columns = {
      seq: table.seq,
      id: table.id,
      subject: table.subject,
      type: table.type,
      headers: table.headers,
      payload: table.payload,
    };
    return deleteSent
      ? q.delete(table).where(claimed).returning(columns)
      : q.update(table).set({ sentAt: sql`now()` }).where(claimed).returning(columns);
  });
}

function tableName(table: OutboxTable): string {
  // biome-ignore lint/suspicious/noExplicitAny: drizzle keeps the table name behind a symbol
  return (table as any)[Symbol.for("drizzle:Name")] as string;
}

/** Unsent rows and the age of the oldest, in seconds. */
export async function readBacklog(
  db: AnyDb,
  table: OutboxTable,
): Promise<{ count: number; oldestAgeSeconds: number }> {
  const [row] = await db
    .select({
      count: sql<number>`count(*)::int`,
      oldest: sql<string | null>`min(${table.createdAt})::text`,
    })
    .from(table)
    .where(isNull(table.sentAt));
  return {
    count: row?.count ?? 0,
    oldestAgeSeconds: row?.oldest ? Math.max(0, (Date.now() - Date.parse(row.oldest)) / 1000) : 0,
  };
}

/** Deletes rows sent longer ago than `retentionMs`; resolves with how many. */
export async function pruneSent(db: AnyDb, table: OutboxTable, retentionMs: number): Promise<number> {
  const cutoff = new Date(Date.now() - retentionMs);
  const deleted = await db
    .delete(table)
    .where(and(isNotNull(table.sentAt), lt(table.sentAt, cutoff)))
    .returning({ seq: table.seq });
  return deleted.length;
}
