import { index, integer, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

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
