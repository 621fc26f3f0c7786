import { outboxTable } from "@meshwork/events";
import { sql } from "drizzle-orm";
import { bigint, check, pgTable, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";

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

/**
 * The simulated provider's own books: one row per call it accepted, keyed like its idempotency
 * records (operation and payment id), so a repeated call gets the first outcome even after a
 * restart. Written by the provider, not by the payment store: the consistency checker compares
 * it with `payments`.
 */
export const providerLedger = pgTable(
  "provider_ledger",
  {
    paymentId: uuid("payment_id").notNull(),
    operation: text("operation", { enum: ["authorize", "capture", "void", "refund"] }).notNull(),
    amountMinor: bigint("amount_minor", { mode: "number" }).notNull().default(0),
    declineReason: text("decline_reason"),
    recordedAt: timestamp("recorded_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: "provider_ledger_pk", columns: [t.paymentId, t.operation] })],
);

/** Events waiting for the relay (PaymentRefunded), written in the same transaction as the refund. */
export const outbox = outboxTable();

export const schema = { payments, providerLedger, outbox };
export type PaymentsSchema = typeof schema;
