import { pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/**
 * The inbox table, to include in a consuming service's own Drizzle schema:
 * `export const inbox = inboxTable();`. One row per (consumer, event id) processed, written in
 * the same transaction as the event's effect: a redelivered event finds its row and is acked
 * with no second effect.
 */
export function inboxTable(name = "inbox") {
  return pgTable(
    name,
    {
      consumer: text("consumer").notNull(),
      eventId: text("event_id").notNull(),
      processedAt: timestamp("processed_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    },
    (t) => [primaryKey({ columns: [t.consumer, t.eventId], name: `${name}_pk` })],
  );
}

export type InboxTable = ReturnType<typeof inboxTable>;
