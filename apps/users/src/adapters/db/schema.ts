import { outboxTable } from "@meshwork/events";
import { sql } from "drizzle-orm";
import { jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

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

/** Events waiting for the relay (UserRegistered), written in the same transaction as the user. */
export const outbox = outboxTable();

export const schema = { users, signingKeys, outbox };
export type UsersSchema = typeof schema;
