import { type AnyTransaction, type DatabaseHandle, prepareStatement } from "@meshwork/db";
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

// biome-ignore lint/suspicious/noExplicitAny: the executor works with any service's schema
type AnyDb = DatabaseHandle<any>["db"];

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
  const at = (current: SagaPosition) => heldAt(t, owner, current);
  const statements = new Map<string, RecordStatement>();
  const record: LeaseStore["record"] = (current, changes, also, log) =>
    recordIfHeld(
      db,
      recordStatement(statements, t, changes, log !== undefined && log.length > 0),
      { owner, current },
      changes,
      also,
      log,
    );

  return {
    owner,
    lease,
    record,
    claim: (limit, types, excluding) =>
      claimDue(db, t, { owner, leaseUntil: lease() }, limit, types, excluding),
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

/** The saga's row, only while `owner` holds it and it is still at `current`. */
function heldAt(t: SagaTable, owner: string, current: SagaPosition) {
  return and(
    eq(t.id, current.id),
    eq(t.leaseOwner, owner),
    eq(t.status, current.status),
    eq(t.step, current.step),
  );
}

/** The saga's row, while `owner` holds it at a position given by placeholders (see {@link heldAt}). */
function heldAtPlaceholders(t: SagaTable) {
  return and(
    eq(t.id, sql.placeholder("held_id")),
    eq(t.leaseOwner, sql.placeholder("held_owner")),
    eq(t.status, sql.placeholder("held_status")),
    eq(t.step, sql.placeholder("held_step")),
  );
}

/** A prepared saga update, per set of changed columns (and whether it appends to the history). */
type RecordStatement = ReturnType<typeof prepareRecord>;

/**
 * The update of `keys` (and `updated_at`, and the history when `appends`) where the saga is still
 * held: built by Drizzle once per shape, not per step.
 */
function prepareRecord(t: SagaTable, keys: readonly string[], appends: boolean) {
  const set: Record<string, unknown> = {};
  for (const k of keys) set[k] = sql.placeholder(k);
  // The history is appended in the UPDATE itself: no round trip of its own, and never out of
  // step with the row.
  if (appends) set.history = sql`${t.history} || ${sql.placeholder("appended")}::jsonb`;
  set.updatedAt = sql.placeholder("updatedAt");
  return prepareStatement<{ id: string }>(`saga_record_${keys.join("_")}${appends ? "_log" : ""}`, (q) =>
    q
      .update(t)
      .set(set as SagaChanges)
      .where(heldAtPlaceholders(t))
      .returning({ id: t.id }),
  );
}

/** The statement for `changes` (and a history entry or not), prepared once per shape. */
function recordStatement(
  cache: Map<string, RecordStatement>,
  t: SagaTable,
  changes: SagaChanges,
  appends: boolean,
): RecordStatement {
  const keys = Object.keys(changes)
    .filter((k) => (changes as Record<string, unknown>)[k] !== undefined)
    .sort();
  const key = `${keys.join(",")}|${appends}`;
  let statement = cache.get(key);
  if (!statement) {
    statement = prepareRecord(t, keys, appends);
    cache.set(key, statement);
  }
  return statement;
}

/**
 * `LeaseStore.record`: the update where the saga is still held at `current`, with `also` in the
 * same transaction; false (and `also` rolled back) when no row matched.
 */
function recordIfHeld(
  db: AnyDb,
  statement: RecordStatement,
  held: { owner: string; current: SagaPosition },
  changes: SagaChanges,
  also: ((tx: AnyTransaction) => Promise<unknown>) | undefined,
  log: readonly SagaHistoryEntry[] | undefined,
): Promise<boolean> {
  const values: Record<string, unknown> = {
    ...changes,
    updatedAt: new Date(),
    held_id: held.current.id,
    held_owner: held.owner,
    held_status: held.current.status,
    held_step: held.current.step,
  };
  if (log && log.length > 0) values.appended = JSON.stringify(log);
  return db
    .transaction(async (tx: AnyTransaction) => {
      // The saga's update and the hooks' first statement go out together (pipelined on the
      // transaction's connection, in the order they are started: the saga's row is locked
      // first, as everywhere else): one round trip fewer. When the lease turns out lost
      // (taken over), the hooks' work is rolled back with the rest.
      const updating = statement.execute(tx, values);
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
}

/** `LeaseStore.claim`: leases up to `limit` due sagas of `types` nobody holds, skipping locked rows. */
function claimDue(
  db: AnyDb,
  t: SagaTable,
  lease: { owner: string; leaseUntil: Date },
  limit: number,
  types: Iterable<string>,
  excluding: ReadonlySet<string>,
) {
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
    .set({ leaseOwner: lease.owner, leaseUntil: lease.leaseUntil })
    .where(inArray(t.id, candidates))
    .returning();
}
