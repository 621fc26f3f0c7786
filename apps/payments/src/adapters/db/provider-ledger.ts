import { type DatabaseHandle, prepareStatement } from "@meshwork/db";
import { and, asc, eq, sql } from "drizzle-orm";
import type { LedgerEntry, ProviderLedger } from "../provider/simulated-provider.js";
import { type PaymentsSchema, providerLedger } from "./schema.js";

/** The ledger in the database, with what the service must do at start-up and shutdown. */
export interface StoredProviderLedger extends ProviderLedger {
  /** Reads the table (after migrations, before the first call). */
  load(): Promise<void>;
  /** Waits for entries still being written (PGlite). */
  flush(): Promise<void>;
}

/**
 * An entry's insert (two per order, outside any transaction), built by Drizzle once and run
 * through postgres.js directly (`prepareStatement`): Drizzle's own prepared query still maps
 * every call through its session.
 */
const insertStatement = prepareStatement<LedgerEntry>("provider_ledger_insert", (q) =>
  q
    .insert(providerLedger)
    .values({
      paymentId: sql.placeholder("paymentId"),
      operation: sql.placeholder("operation"),
      amountMinor: sql.placeholder("amountMinor"),
      declineReason: sql.placeholder("declineReason"),
      recordedAt: sql.placeholder("recordedAt"),
    })
    .onConflictDoNothing()
    .returning(),
);

const keyOf = (e: { operation: string; paymentId: string }) => `${e.operation}:${e.paymentId}`;

/**
 * The simulated provider's books in the `provider_ledger` table, read once at start-up and kept
 * in memory. The provider is called inside the payment's transaction, yet its entries must commit
 * on their own, as a real provider's would (so the checker can catch the two disagreeing):
 * - on a Postgres server an entry is inserted through `writer`, a pool of its own, before the call
 *   answers (through the payments' pool it deadlocks once every connection is held by a payment
 *   waiting for its entry); another instance's entry for the same call wins (`ON CONFLICT DO
 *   NOTHING`, re-read);
 * - on PGlite, one session that the payment's transaction holds, the entry is written as soon as
 *   that transaction releases it (awaiting it would deadlock); `flush()` waits for those writes.
 */
export function createProviderLedger(
  database: DatabaseHandle<PaymentsSchema>,
  writer: DatabaseHandle<PaymentsSchema> = database,
): StoredProviderLedger {
  const { db } = writer;
  const entries = new Map<string, LedgerEntry>();
  const writing = new Set<Promise<unknown>>();
  const insert = async (entry: LedgerEntry): Promise<LedgerEntry> => {
    const [row] = await insertStatement.execute(db, { ...entry });
    if (row) return row;
    const [standing] = await db
      .select()
      .from(providerLedger)
      .where(
        and(eq(providerLedger.paymentId, entry.paymentId), eq(providerLedger.operation, entry.operation)),
      );
    return standing ?? entry;
  };
  return {
    async load() {
      for (const row of await db.select().from(providerLedger)) entries.set(keyOf(row), row);
    },
    find: async (operation, paymentId) => entries.get(keyOf({ operation, paymentId })),
    async record(entry) {
      const key = keyOf(entry);
      const known = entries.get(key);
      if (known) return known;
      const fresh = { ...entry, recordedAt: new Date() };
      entries.set(key, fresh);
      if (database.driver === "pglite") {
        const write = insert(fresh).finally(() => writing.delete(write));
        writing.add(write);
        return fresh;
      }
      try {
        const stands = await insert(fresh);
        entries.set(key, stands);
        return stands;
      } catch (err) {
        entries.delete(key);
        throw err;
      }
    },
    // On a server the table is read: with several payments instances, this one's memory lacks
    // what the others recorded since it loaded (a chaos run saw "captured, but the provider's
    // ledger says missing" when the checker's call reached the other replica).
    entries: async (paymentId) =>
      database.driver === "pglite"
        ? [...entries.values()]
            .filter((e) => e.paymentId === paymentId)
            .sort((a, b) => a.recordedAt.getTime() - b.recordedAt.getTime())
        : db
            .select()
            .from(providerLedger)
            .where(eq(providerLedger.paymentId, paymentId))
            .orderBy(asc(providerLedger.recordedAt)),
    async flush() {
      await Promise.allSettled([...writing]);
    },
  };
}
