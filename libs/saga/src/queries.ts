import type { DatabaseHandle } from "@meshwork/db";
import { and, desc, eq, getTableColumns, inArray, lt } from "drizzle-orm";
import type { SagaHistoryEntry, SagaRow, SagaTable } from "./table.js";

/** A saga as listed: its row without the history (which can be long). */
export type SagaSummary = Omit<SagaRow, "history">;

/** What to list: any of `statuses` (all when empty), newest first, before the id `beforeId`. */
export interface SagaListFilter {
  statuses?: readonly SagaRow["status"][];
  types?: readonly string[];
  /** Keyset paging: only sagas whose id sorts before this one (ids are UUIDv7: creation order). */
  beforeId?: string;
  limit: number;
}

/**
 * Read-only queries over a service's sagas table, for the service's own admin API (orders'
 * ListSagas and GetSaga): they never take a lease or change a row.
 */
export interface SagaQueries {
  list(filter: SagaListFilter): Promise<SagaSummary[]>;
  /** One saga with its history, or undefined. */
  get(id: string): Promise<SagaRow | undefined>;
}

/** The read-only queries over `table` (see {@link SagaQueries}). */
export function createSagaQueries(options: {
  // biome-ignore lint/suspicious/noExplicitAny: works with any service's schema
  database: DatabaseHandle<any>;
  table: SagaTable;
}): SagaQueries {
  const { table: t } = options;
  const db = options.database.db;
  const { history: _history, ...summary } = getTableColumns(t);
  return {
    async list(filter) {
      const rows: SagaSummary[] = await db
        .select(summary)
        .from(t)
        .where(
          and(
            filter.statuses && filter.statuses.length > 0
              ? inArray(t.status, [...filter.statuses])
              : undefined,
            filter.types && filter.types.length > 0 ? inArray(t.type, [...filter.types]) : undefined,
            filter.beforeId ? lt(t.id, filter.beforeId) : undefined,
          ),
        )
        .orderBy(desc(t.id))
        .limit(filter.limit);
      return rows;
    },
    async get(id) {
      const [row]: SagaRow[] = await db.select().from(t).where(eq(t.id, id)).limit(1);
      return row;
    },
  };
}

/**
 * Where one step of a saga is:
 * - `pending`: not reached yet (the saga is still going); `skipped`: never run (the saga ended);
 * - `running`: the current step, not failed yet; `retrying`: it failed and waits for its next
 *   attempt; `waiting`: it is unavailable and waits within the transient budget;
 * - `done`; `failed`: refused, or gave up (attempts or budget spent); `stopped`: the saga was
 *   stopped before it (a cancellation);
 * - `compensating`: being undone now; `compensated`: undone.
 */
export type SagaStepStatus =
  | "pending"
  | "skipped"
  | "running"
  | "retrying"
  | "waiting"
  | "done"
  | "failed"
  | "stopped"
  | "compensating"
  | "compensated";

/** One step of a saga, from its history and the row's current state. */
export interface SagaStepView {
  name: string;
  status: SagaStepStatus;
  /** Attempts of the action so far. */
  attempts: number;
  /** Attempts of its compensation so far (0 when it was never undone). */
  compensationAttempts: number;
  /** The latest error of the step or its compensation, if any. */
  lastError?: string;
  /** When the action succeeded. */
  doneAt?: Date;
  /** When its compensation succeeded. */
  compensatedAt?: Date;
  /** The step's entries of the saga's history, oldest first. */
  history: SagaHistoryEntry[];
}

const ENDING: ReadonlySet<SagaHistoryEntry["outcome"]> = new Set(["refused", "gave_up"]);
const OUTCOMES: ReadonlySet<unknown> = new Set<SagaHistoryEntry["outcome"]>([
  "done",
  "undone",
  "failed",
  "unavailable",
  "refused",
  "gave_up",
  "stopped",
]);

const isTime = (v: unknown): boolean => typeof v === "string" && !Number.isNaN(Date.parse(v));

function isHistoryEntry(e: unknown): e is SagaHistoryEntry {
  if (!e || typeof e !== "object") return false;
  const x = e as Record<string, unknown>;
  return (
    typeof x.step === "string" &&
    (x.phase === "action" || x.phase === "compensate") &&
    OUTCOMES.has(x.outcome) &&
    Number.isSafeInteger(x.attempt) &&
    isTime(x.at) &&
    (x.error === undefined || typeof x.error === "string") &&
    (x.retryAt === undefined || isTime(x.retryAt))
  );
}

/**
 * A saga's stored history (the row's `history` jsonb), keeping only well-formed entries: a row
 * written by another version of the code, or edited by hand, must not break reading the saga (an
 * entry with an unreadable time made GetSaga fail INTERNAL).
 */
export function readSagaHistory(value: unknown): SagaHistoryEntry[] {
  return Array.isArray(value) ? value.filter(isHistoryEntry) : [];
}

/**
 * Each step of `stepNames` (the definition's steps, in order) as it stands in `row`: its status,
 * attempts, times and errors. Attempts beyond what the history keeps come from the row for the
 * current step.
 */
export function describeSagaSteps(row: SagaRow, stepNames: readonly string[]): SagaStepView[] {
  const ended = row.status === "completed" || row.status === "compensated";
  const stored = readSagaHistory(row.history);
  return stepNames.map((name, i) => {
    const history = stored.filter((e) => e.step === name);
    const actions = history.filter((e) => e.phase === "action");
    const compensations = history.filter((e) => e.phase === "compensate");
    const current = row.step === i;
    const maxAttempt = (es: SagaHistoryEntry[]) => es.reduce((m, e) => Math.max(m, e.attempt), 0);
    let attempts = maxAttempt(actions);
    let compensationAttempts = maxAttempt(compensations);
    if (current && row.status === "running") attempts = Math.max(attempts, row.attempts);
    if (current && row.status === "compensating")
      compensationAttempts = Math.max(compensationAttempts, row.attempts);
    const done = actions.find((e) => e.outcome === "done");
    const undone = compensations.find((e) => e.outcome === "done" || e.outcome === "undone");
    const lastAction = actions.at(-1);
    let status: SagaStepStatus;
    if (undone) status = "compensated";
    else if (current && row.status === "compensating") status = "compensating";
    else if (done) status = "done";
    else if (lastAction && ENDING.has(lastAction.outcome)) status = "failed";
    else if (lastAction?.outcome === "stopped") status = "stopped";
    // Passed by a running or completed saga (also a saga older than its history: none recorded).
    else if (row.status === "completed" || (row.status === "running" && i < row.step)) status = "done";
    else if (current && row.status === "running")
      status = row.transientSince ? "waiting" : row.attempts > 0 ? "retrying" : "running";
    else status = ended ? "skipped" : "pending";
    const withError = [...history].reverse().find((e) => e.error !== undefined);
    return {
      name,
      status,
      attempts,
      compensationAttempts,
      ...(withError?.error !== undefined ? { lastError: withError.error } : {}),
      ...(done ? { doneAt: new Date(done.at) } : {}),
      ...(undone ? { compensatedAt: new Date(undone.at) } : {}),
      history,
    };
  });
}
