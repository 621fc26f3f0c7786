import { inboxTable, outboxTable } from "@meshwork/events";
import { sql } from "drizzle-orm";
import { bigint, check, integer, jsonb, pgTable, smallint, text, timestamp, uuid } from "drizzle-orm/pg-core";

/** Accounts. Ids are UUIDv7, so ordering by id is ordering by creation. */
export const users = pgTable("users", {
  id: uuid("id").primaryKey(),
  email: text("email").notNull().unique("users_email_unique"),
  displayName: text("display_name").notNull(),
  passwordHash: text("password_hash").notNull(),
  roles: text("roles").array().notNull().default(sql`'{}'::text[]`),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/**
 * The keys tokens are signed with. Stored here so they survive restarts and every instance of
 * the service signs with the same key; the public halves are the JWKS document.
 */
export const signingKeys = pgTable("signing_keys", {
  kid: text("kid").primaryKey(),
  algorithm: text("algorithm").notNull(),
  privateJwk: jsonb("private_jwk").notNull(),
  publicJwk: jsonb("public_jwk").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  retiredAt: timestamp("retired_at", { withTimezone: true, mode: "date" }),
});

/**
 * The one-time secret that creates the first admin: at most one row (id 1), its SHA-256 only
 * (the secret is random, 256 bits), consumed in the transaction that grants the role.
 */
export const bootstrapSecret = pgTable(
  "bootstrap_secret",
  {
    id: smallint("id").primaryKey().default(1),
    secretHash: text("secret_hash").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    consumedAt: timestamp("consumed_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [check("bootstrap_secret_single_row", sql`${t.id} = 1`)],
);

/**
 * Failed authentications per account (a normalised email, or `bootstrap`) in the current window:
 * past the limit, further attempts are refused until the window ends, right password or not.
 * In the database so every instance of the service counts the same failures.
 */
export const authFailures = pgTable("auth_failures", {
  account: text("account").primaryKey(),
  failures: integer("failures").notNull(),
  windowStart: timestamp("window_start", { withTimezone: true, mode: "date" }).notNull(),
});

/** Events waiting for the relay (UserRegistered), written in the same transaction as the user. */
export const outbox = outboxTable();

/**
 * Strangler fig: the legacy monolith's users applied here (UserChanged, by CDC or backfill), per
 * user the highest capture sequence applied, so an older or repeated capture is dropped. The
 * fingerprint (SHA-256) of the last legacy password hash applied tells a password changed in
 * legacy from a repeat of the one already re-hashed here. `conflict`: why the last capture could
 * not be applied (its email belongs to another account of this service), else null.
 */
export const legacyUserSync = pgTable("legacy_user_sync", {
  userId: uuid("user_id").primaryKey(),
  sequence: bigint("sequence", { mode: "number" }).notNull(),
  passwordFingerprint: text("password_fingerprint").notNull(),
  conflict: text("conflict"),
  appliedAt: timestamp("applied_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/** Events consumed (the legacy CDC's UserChanged), recorded with their effect. */
export const inbox = inboxTable();

export const schema = { users, signingKeys, bootstrapSecret, authFailures, outbox, legacyUserSync, inbox };
export type UsersSchema = typeof schema;
