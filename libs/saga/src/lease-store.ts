import type { AnyTransaction, DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import { and, eq, inArray, isNull, lte, notInArray, or, sql, TransactionRollbackError } from "drizzle-orm";
import type { SagaHistoryEntry, SagaRow, SagaTable } from "./table.js";

/** Where a saga is: every change is checked against it (same status and step, still ours). */
export type SagaPosition = Pick<SagaRow, "id" | "status" | "step">;

/**
 * The sagas table as one executor sees it: leases claimed and renewed under its name, and every
 * change made only while the lease is still its own.
 */
export interface LeaseStore {
  /** This executor's name in `lease_owner`. */
  readonly owner: string;
  /** A lease deadline from now. */
  lease(): Date;
  /**
   * Updates the saga if this executor still holds it and it is still at `current`, with `also`
   * in the same transaction: false when the lease was lost or the saga moved on without us.
   * `log` is appended to the saga's history in the same statement.
   */
  record(
    current: SagaPosition,
    changes: SagaChanges,
    also?: (tx: AnyTransaction) => Promise<void>,
    log?: readonly SagaHistoryEntry[],
  ): Promise<boolean>;
  /** Leases up to `limit` runnable sagas of `types` (never those in `excluding`). */
  claim(limit: number, types: readonly string[], excluding: ReadonlySet<string>): Promise<SagaRow[]>;
  /** Renews the lease of a saga still at `current` (a heartbeat during a long step). */
  renew(current: SagaPosition): void;
  /** Gives the saga back, runnable again at `at`, with the changes of the failed attempt. */
  retryLater(
    current: SagaPosition,
    at: Date,
    changes: SagaChanges,
    log?: readonly SagaHistoryEntry[],
  ): Promise<boolean>;
  /** Gives the saga back at its last recorded point (the executor stops). */
  release(current: SagaPosition): Promise<boolean>;
  /**
   * Switches to compensation from the current step (clamped to the last one): it failed, was
   * refused or was about to run, and may still have taken effect, so it is undone too.
   */
  compensateFrom(
    row: SagaRow,
    reason: string,
    stepCount: number,
    log?: readonly SagaHistoryEntry[],
  ): Promise<SagaRow | undefined>;
}

/** A change to a saga's row; its history only grows, through `log`. */
export type SagaChanges = Partial<Omit<SagaRow, "history">>;

/** The lease store of one executor over a service's sagas table. */
export function createLeaseStore(options: {
  // biome-ignore lint/suspicious/noExplicitAny: the executor works with any service's schema
  database: DatabaseHandle<any>;
  table: SagaTable;
  owner: string;
  leaseMs: number;
  logger: Logger;
}): LeaseStore {
  const { table: t, owner, logger } = options;
  const db = options.database.db;
  const lease = () => new Date(Date.now() + options.leaseMs);
  const at = (current: SagaPosition) =>
    and(
      eq(t.id, current.id),
      eq(t.leaseOwner, owner),
      eq(t.status, current.status),
      eq(t.step, current.step),
    );

  // Appended in the UPDATE itself: no round trip of its own, and never out of step with the row.
  const appended = (log: readonly SagaHistoryEntry[] | undefined) =>
    log && log.length > 0 ? { history: sql`${t.history} || ${JSON.stringify(log)}::jsonb` } : {};

  const record: LeaseStore["record"] = (current, changes, also, log) =>
    db
      .transaction(async (tx: AnyTransaction) => {
        // The saga's update and the hooks' first statement go out together (pipelined on the
        // transaction's connection, in the order they are started: the saga's row is locked
        // first, as everywhere else): one round trip fewer. When the lease turns out lost
        // (taken over), the hooks' work is rolled back with the rest.
        const updating = tx
          .update(t)
          .set({ ...changes, ...appended(log), updatedAt: new Date() })
          .where(at(current))
          .returning({ id: t.id })
          .then((rows) => rows);
        const [saga, hooks] = await Promise.allSettled([updating, also?.(tx)]);
        if (saga.status === "rejected") throw saga.reason;
        if (saga.value.length === 0) return tx.rollback(); // the lease was lost
        if (hooks.status === "rejected") throw hooks.reason;
        return true;
      })
      .catch((err: unknown) => {
        if (err instanceof TransactionRollbackError) return false;
        throw err;
      });

  return {
    owner,
    lease,
    record,
    claim(limit, types, excluding) {
      const now = new Date();
      const candidates = db
        .select({ id: t.id })
        .from(t)
        .where(
          and(
            inArray(t.status, ["running", "compensating"]),
            inArray(t.type, [...types]),
            lte(t.nextAttemptAt, now),
            or(isNull(t.leaseUntil), lte(t.leaseUntil, now)),
            excluding.size > 0 ? notInArray(t.id, [...excluding]) : undefined,
          ),
        )
        .orderBy(t.nextAttemptAt)
        .limit(limit)
        .for("update", { skipLocked: true });
      return db
        .update(t)
        .set({ leaseOwner: owner, leaseUntil: lease() })
        .where(inArray(t.id, candidates))
        .returning();
    },
    renew(current) {
      db.update(t)
        .set({ leaseUntil: lease() })
        .where(at(current))
        .catch((err: unknown) => logger.warn({ err, saga_id: current.id }, "renewing a saga lease failed"));
    },
    retryLater: (current, when, changes, log) =>
      record(
        current,
        { ...changes, nextAttemptAt: when, leaseOwner: null, leaseUntil: null },
        undefined,
        log,
      ),
    release: (current) => record(current, { leaseOwner: null, leaseUntil: null }),
    async compensateFrom(row, reason, stepCount, log) {
      const next = {
        status: "compensating" as const,
        step: Math.min(row.step, stepCount - 1),
        attempts: 0,
        transientAttempts: 0,
        transientSince: null,
        failure: reason,
        leaseUntil: lease(),
      };
      return (await record(row, next, undefined, log)) ? { ...row, ...next } : undefined;
    },
  };
}
