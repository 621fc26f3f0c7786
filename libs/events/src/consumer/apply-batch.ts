import { type AnyTransaction, type DatabaseHandle, prepareStatement } from "@meshwork/db";
import { context } from "@opentelemetry/api";
import { sql } from "drizzle-orm";
import type { InboxTable } from "../inbox.js";
import type { Delivery } from "./delivery.js";

/** What {@link createBatchApplier} needs. */
export interface BatchApplierOptions {
  // biome-ignore lint/suspicious/noExplicitAny: consumers work with any service's schema
  database: DatabaseHandle<any>;
  inbox: InboxTable;
  /** The inbox's consumer key. */
  durable: string;
}

/**
 * Applies a batch of deliveries and leaves each in state `applied`, `duplicate` or `failed`
 * (it never rejects).
 */
export type BatchApplier = (batch: Delivery[]) => Promise<void>;

/**
 * Creates the batch application of a consumer. A batch is applied in one transaction: one
 * multi-row inbox insert tells which events are new, their handlers run, one commit (one WAL
 * flush) covers them all. If anything in the batch fails, the transaction is rolled back and the
 * batch is applied again with each event in a savepoint of its own, so a failing handler rolls
 * back its own effect and inbox row only.
 */
export function createBatchApplier(options: BatchApplierOptions): BatchApplier {
  const { database, inbox, durable } = options;
  // One statement of one shape whatever the batch's size (the ids as one array parameter), its
  // text and row mapping built once: Drizzle's building per batch was ~2% of the consumer's CPU.
  const recordNew = prepareStatement<{ eventId: string }>(`${durable}_inbox_record_batch`, (q) =>
    q
      .insert(inbox)
      .select(sql`select ${durable}, unnest(${sql.placeholder("ids")}::text[]), now()`)
      .onConflictDoNothing()
      .returning({ eventId: inbox.eventId }),
  );

  async function applyTogether(batch: Delivery[]): Promise<void> {
    const applied = await database.db.transaction(async (tx) => {
      const rows = await recordNew.execute(tx, { ids: batch.map((d) => d.event.id) });
      const fresh = new Set(rows.map((r) => r.eventId));
      const toApply: Delivery[] = [];
      for (const d of batch) {
        // The first of several deliveries of one event in a batch is the one that applies.
        if (fresh.delete(d.event.id)) toApply.push(d);
        else d.duplicate();
      }
      await runHandlers(toApply, tx);
      return toApply;
    });
    for (const d of applied) d.applied();
  }

  async function applyEachInSavepoint(batch: Delivery[]): Promise<void> {
    try {
      await database.db.transaction(async (tx) => {
        for (const d of batch) await context.with(d.ctx, () => applyInSavepoint(d, tx));
      });
    } catch (error) {
      // The commit itself failed: nothing of the batch was applied.
      for (const d of batch) d.failed(error);
    }
  }

  async function applyInSavepoint(d: Delivery, tx: AnyTransaction): Promise<void> {
    try {
      const fresh = await tx.transaction(async (sp) => {
        const rows = await sp
          .insert(inbox)
          .values({ consumer: durable, eventId: d.event.id })
          .onConflictDoNothing()
          .returning({ eventId: inbox.eventId });
        if (rows.length === 0) return false;
        const handler = d.handler;
        if (typeof handler === "function") await handler(d.message, sp, d.event);
        else await handler.batch([d.batchItem()], sp);
        return true;
      });
      if (fresh) d.applied();
      else d.duplicate();
    } catch (error) {
      d.failed(error);
    }
  }

  return async (batch) => {
    try {
      await applyTogether(batch);
    } catch (error) {
      if (batch.length === 1 && batch[0]) batch[0].failed(error);
      else await applyEachInSavepoint(batch);
    }
  };
}

/** Runs the handlers of the new events in stream order; a run of one batch handler goes in one call. */
async function runHandlers(toApply: Delivery[], tx: AnyTransaction): Promise<void> {
  for (let i = 0; i < toApply.length; ) {
    const d = toApply[i] as Delivery;
    const handler = d.handler;
    if (typeof handler === "function") {
      await context.with(d.ctx, () => handler(d.message, tx, d.event));
      i++;
      continue;
    }
    // A run of consecutive events of this batch handler's type goes in one call.
    let end = i + 1;
    while (end < toApply.length && toApply[end]?.handler === handler) end++;
    const run = toApply.slice(i, end);
    await context.with(d.ctx, () =>
      handler.batch(
        run.map((r) => r.batchItem()),
        tx,
      ),
    );
    i = end;
  }
}
