import { outboxTable } from "@meshwork/events";
import { sql } from "drizzle-orm";
import { bigint, check, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

/**
 * Payments by the caller's id. A void of an id never authorized leaves a `voided` row without
 * user or amount, so an authorization that arrives late is refused.
 */
export const payments = pgTable(
  "payments",
  {
    id: uuid("id").primaryKey(),
    userId: uuid("user_id"),
    amountMinor: bigint("amount_minor", { mode: "number" }),
    currency: text("currency"),
    state: text("state", { enum: ["authorized", "captured", "voided", "refunded", "declined"] }).notNull(),
    declineReason: text("decline_reason"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    check(
      "payments_amount_ok",
      sql`(${t.amountMinor} IS NULL AND ${t.state} = 'voided') OR (${t.amountMinor} >= 0 AND ${t.userId} IS NOT NULL AND ${t.currency} IS NOT NULL)`,
    ),
  ],
);

/** Events waiting for the relay (PaymentRefunded), written in the same transaction as the refund. */
export const outbox = outboxTable();

export const schema = { payments, outbox };
export type PaymentsSchema = typeof schema;
