import { inboxTable } from "@meshwork/events";
import { index, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

/** One record per event a user should hear about. Ids are UUIDv7 (creation order). */
export const notifications = pgTable(
  "notifications",
  {
    id: uuid("id").primaryKey(),
    userId: uuid("user_id").notNull(),
    kind: text("kind").notNull(),
    title: text("title").notNull(),
    body: text("body").notNull(),
    eventId: text("event_id").notNull().unique("notifications_event_id_unique"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [index("notifications_user_idx").on(t.userId, t.id)],
);

/** Events this service has applied, per consumer: the exactly-once guard. */
export const inbox = inboxTable();

export const schema = { notifications, inbox };
export type NotificationsSchema = typeof schema;
