import { index, integer, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

/**
 * One entry of a saga's history, appended in the same statement as the change it describes: what
 * happened to a step (or its compensation) and when. The history is what a saga's timeline is
 * drawn from (orders' GetSaga, the console); the row's other columns are only the current state.
 */
export interface SagaHistoryEntry {
  /** The step's name. */
  step: string;
  phase: "action" | "compensate";
  /**
   * - `done`: the step (or its compensation) succeeded;
   * - `undone`: a compensation that undid something (a refund);
   * - `failed`: an attempt failed and is retried after `retryAt`;
   * - `unavailable`: a transient failure, waited out within the budget until `retryAt`;
   * - `refused`: the step refused (a business failure): compensation starts;
   * - `gave_up`: attempts spent or the transient budget passed: compensation starts;
   * - `stopped`: the definition's `beforeStep` stopped the saga (a cancellation): compensation starts.
   */
  outcome: "done" | "undone" | "failed" | "unavailable" | "refused" | "gave_up" | "stopped";
  /** Which attempt of the step (or compensation) this was; 0 for `stopped` (none ran). */
  attempt: number;
  /** ISO time of the entry. */
  at: string;
  error?: string;
  /** ISO time of the next attempt (`failed`, `unavailable`). */
  retryAt?: string;
}

/**
 * The saga instances of a service, in its own database: `export const sagas = sagaTable();` in
 * the service's schema. A row changes in the same transaction as the service's own state (the
 * saga starts with the order; each step's progress commits with the order's status).
 *
 * `step` is the index of the next step to run while `running`, and of the next step to undo
 * while `compensating` (counting down; below 0 the saga is `compensated`).
 */
export function sagaTable(name = "sagas") {
  return pgTable(
    name,
    {
      id: uuid("id").primaryKey(),
      type: text("type").notNull(),
      status: text("status", { enum: ["running", "compensating", "completed", "compensated"] }).notNull(),
      step: integer("step").notNull().default(0),
      /** Attempts of the current step (or compensation) so far. */
      attempts: integer("attempts").notNull().default(0),
      /** Of those, the transient failures (not counted against the definition's attempts)... */
      transientAttempts: integer("transient_attempts").notNull().default(0),
      /** ...and when the first of them happened: the transient budget runs from there. */
      transientSince: timestamp("transient_since", { withTimezone: true, mode: "date" }),
      /** What happened to each step, oldest first (see {@link SagaHistoryEntry}). */
      history: jsonb("history").$type<SagaHistoryEntry[]>().notNull().default([]),
      /** The steps whose compensation undid something (a refund), for `onCompensated`. */
      undone: jsonb("undone").$type<string[]>().notNull().default([]),
      nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true, mode: "date" })
        .notNull()
        .defaultNow(),
      /** The executor working on it, until `lease_until`; another takes over after that. */
      leaseOwner: text("lease_owner"),
      leaseUntil: timestamp("lease_until", { withTimezone: true, mode: "date" }),
      data: jsonb("data").notNull(),
      /** Why it is compensating (a business failure, or a step that kept failing). */
      failure: text("failure"),
      lastError: text("last_error"),
      /** The W3C trace context of the request that started it: every step span joins that trace. */
      traceparent: text("traceparent"),
      createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
      updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    },
    (t) => [index(`${name}_runnable_idx`).on(t.status, t.nextAttemptAt)],
  );
}

/** The Drizzle table of a service's sagas (see {@link sagaTable}). */
export type SagaTable = ReturnType<typeof sagaTable>;
/** One saga instance as stored. */
export type SagaRow = SagaTable["$inferSelect"];
