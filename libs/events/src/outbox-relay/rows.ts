import type { DatabaseHandle } from "@meshwork/db";
import { and, asc, isNotNull, isNull, lt, sql } from "drizzle-orm";
import type { OutboxTable } from "../outbox.js";
import type { OutboxRow } from "./publish-row.js";

// biome-ignore lint/suspicious/noExplicitAny: the relay works with any service's schema
type AnyDb = DatabaseHandle<any>["db"];

/**
 * Claims up to `batchSize` unsent rows with `FOR UPDATE SKIP LOCKED` (so several instances never
 * publish the same row at once), hands them to `publish` (all at once), and marks them sent in the same
 * transaction. Resolves with how many rows it sent.
 */
export async function claimAndPublish(
  db: AnyDb,
  table: OutboxTable,
  batchSize: number,
  publish: (rows: OutboxRow[]) => Promise<void>,
): Promise<number> {
  return db.transaction(async (tx) => {
    const rows = await tx
      .select()
      .from(table)
      .where(isNull(table.sentAt))
      .orderBy(asc(table.seq))
      .limit(batchSize)
      .for("update", { skipLocked: true });
    if (rows.length === 0) return 0;
    // This transaction only marks rows as sent. If a database crash loses that mark, the rows
    // are published again, which the broker's de-duplication and the consumers' inboxes
    // absorb; so its commit need not wait for the WAL flush (tens of ms when the disk
    // stalls), which would hold up the next batch. (Set here, not for empty polls: it only
    // matters at commit.)
    await tx.execute(sql`set local synchronous_commit = off`);
    await publish(rows);
    await tx
      .update(table)
      .set({ sentAt: sql`now()` })
      // The claimed rows as one array parameter: one statement shape for every batch size.
      .where(sql`${table.seq} = any(${sql.param(rows.map((r) => r.seq))}::bigint[])`);
    return rows.length;
  });
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
