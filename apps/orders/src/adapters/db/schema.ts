import { inboxTable, outboxTable } from "@meshwork/events";
import { sagaTable } from "@meshwork/saga";
import { bigint, boolean, index, jsonb, pgTable, text, timestamp, unique, uuid } from "drizzle-orm/pg-core";
import type { OrderItem } from "../../domain/order.js";

/**
 * Orders. `(user_id, idempotency_key)` is unique: a repeated PlaceOrder finds its order, and
 * `request_hash` tells a true repeat from a different request with the same key.
 */
export const orders = pgTable(
  "orders",
  {
    id: uuid("id").primaryKey(),
    userId: uuid("user_id").notNull(),
    idempotencyKey: text("idempotency_key").notNull(),
    requestHash: text("request_hash").notNull(),
    items: jsonb("items").$type<OrderItem[]>().notNull(),
    totalMinor: bigint("total_minor", { mode: "number" }).notNull(),
    currency: text("currency").notNull(),
    status: text("status", {
      enum: ["pending", "stock_reserved", "payment_authorized", "confirmed", "cancelled"],
    }).notNull(),
    cancelReason: text("cancel_reason"),
    /** The customer asked to cancel: the saga stops before its next step. */
    cancelRequested: boolean("cancel_requested").notNull().default(false),
    /** The saga began capturing the payment: too late to cancel. */
    captureStarted: boolean("capture_started").notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    unique("orders_user_key_unique").on(t.userId, t.idempotencyKey),
    index("orders_user_idx").on(t.userId, t.id),
    // ListOrders pages newest first by (created_at, id): legacy's orders keep their (UUIDv4) ids.
    index("orders_user_created_idx").on(t.userId, t.createdAt, t.id),
    // The admin's ListOrders (every user's orders) pages the same way.
    index("orders_created_idx").on(t.createdAt, t.id),
  ],
);

/** The placement sagas, changed in the same transactions as the orders they drive. */
export const sagas = sagaTable();

/** OrderPlaced, OrderConfirmed, OrderCancelled, written with the order's changes. */
export const outbox = outboxTable();

/**
 * Strangler fig: the orders copied from the legacy monolith (its CDC's OrderChanged), with the
 * capture sequence last applied per order; an older or repeated capture is dropped.
 */
export const legacyOrderSync = pgTable("legacy_order_sync", {
  orderId: uuid("order_id").primaryKey(),
  sequence: bigint("sequence", { mode: "number" }).notNull(),
  appliedAt: timestamp("applied_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/** Events consumed (legacy's OrderChanged), recorded with their effect. */
export const inbox = inboxTable();

export const schema = { orders, sagas, outbox, legacyOrderSync, inbox };
export type OrdersSchema = typeof schema;
