import { outboxTable } from "@meshwork/events";
import { sql } from "drizzle-orm";
import { bigint, check, index, pgTable, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";

/**
 * Payments by the caller's id. A void of an id never authorized leaves a `voided` row without
 * user or amount (a tombstone), so an authorization that arrives late is refused.
 * `provider_void_at` is when the provider confirmed the void of a tombstone's id: a tombstone
 * without it may still have a hold at the provider, and the hold sweeper voids it there.
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
    providerVoidAt: timestamp("provider_void_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [
    index("payments_unreleased_tombstones")
      .on(t.createdAt)
      .where(sql`${t.amountMinor} IS NULL AND ${t.providerVoidAt} IS NULL`),
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
