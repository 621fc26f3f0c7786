import { inboxTable, outboxTable } from "@meshwork/events";
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  index,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";

/**
 * The catalogue and its stock. `reserved` counts units held by open reservations; the checks make
 * overselling impossible even for a buggy query: reserved never exceeds on_hand, neither is
 * negative.
 */
export const products = pgTable(
  "products",
  {
    id: uuid("id").primaryKey(),
    sku: text("sku").notNull().unique("products_sku_unique"),
    name: text("name").notNull(),
    priceMinor: bigint("price_minor", { mode: "number" }).notNull(),
    currency: text("currency").notNull(),
    onHand: bigint("on_hand", { mode: "number" }).notNull(),
    reserved: bigint("reserved", { mode: "number" }).notNull().default(0),
    /**
     * Units ever received: the initial stock plus every adjustment, and for a legacy-synced
     * product what legacy's captures added and what held-back units took out. Conservation:
     * on_hand is this minus what committed reservations took (the consistency checker verifies it).
     */
    received: bigint("received", { mode: "number" }).notNull().default(0),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    /** Grows by one with every change of the row: caches compare it, events carry it. */
    version: bigint("version", { mode: "number" }).notNull().default(1),
    /**
     * The product came from the legacy monolith (its sync created or updated it; a `legacy_sync`
     * row exists): only then do this side's writes record what they publish for legacy
     * (markPublished). Read in the row a write already locks, so the mesh's own products pay nothing.
     */
    legacySynced: boolean("legacy_synced").notNull().default(false),
  },
  (t) => [
    check("products_stock_ok", sql`${t.reserved} >= 0 AND ${t.reserved} <= ${t.onHand}`),
    check("products_price_ok", sql`${t.priceMinor} >= 0`),
  ],
);

/**
 * Reservations by the caller's id. A release of an id never reserved leaves a `released` row
 * with no items, so a late ReserveStock for it is refused.
 */
export const reservations = pgTable("reservations", {
  id: uuid("id").primaryKey(),
  state: text("state", { enum: ["held", "committed", "released"] }).notNull(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export const reservationItems = pgTable(
  "reservation_items",
  {
    reservationId: uuid("reservation_id")
      .notNull()
      .references(() => reservations.id),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id),
    quantity: bigint("quantity", { mode: "number" }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.reservationId, t.productId] }),
    index("reservation_items_product_idx").on(t.productId),
    check("reservation_items_quantity_ok", sql`${t.quantity} > 0`),
  ],
);

/** Events (ProductUpdated, StockChanged) written with the change they describe. */
export const outbox = outboxTable();

/**
 * Strangler fig: the legacy monolith's change data capture applied here, per product the
 * highest capture sequence applied (an older or repeated ProductChanged is dropped), what legacy
 * must have seen of this side for a capture not to be concurrent with it (the versions of the
 * last ProductUpdated and StockChanged published for legacy's reverse sync, recorded with them),
 * the running sum of legacy's own stock changes last applied (null: none applied yet), and what
 * of it the reservations' floor has not taken out of units on hand yet.
 */
export const legacySync = pgTable("legacy_sync", {
  productId: uuid("product_id").primaryKey(),
  sequence: bigint("sequence", { mode: "number" }).notNull(),
  meshNameVersion: bigint("mesh_name_version", { mode: "number" }).notNull().default(0),
  meshStockVersion: bigint("mesh_stock_version", { mode: "number" }).notNull().default(0),
  /**
   * Legacy's running sum carried by the last capture applied (the next one adds what it grew
   * since); null until a capture carrying it (legacy schema step 7) is applied: no baseline yet.
   */
  legacyStockDelta: bigint("legacy_stock_delta", { mode: "number" }),
  /**
   * Units legacy sold that reservations held here: on_hand stayed at `reserved` (or 0), so this
   * many are still in it. This side's stock writes take them out as units free up (never below
   * `reserved` or 0) and every StockChanged carries what is left, which legacy leaves out of its
   * count (it never sells them again).
   */
  legacyHeldBack: bigint("legacy_held_back", { mode: "number" }).notNull().default(0),
  appliedAt: timestamp("applied_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/** Events consumed (the legacy CDC), recorded with their effect. */
export const inbox = inboxTable();

export const schema = { products, reservations, reservationItems, outbox, legacySync, inbox };
export type InventorySchema = typeof schema;
