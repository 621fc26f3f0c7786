import { createHash } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { UserChanged } from "@meshwork/contracts/meshwork/legacy/v1/events";
import type { AnyTransaction } from "@meshwork/db";
import { and, eq, ne, sql } from "drizzle-orm";
import { normalizeEmail } from "../../domain/user.js";
import { legacyUserSync, users } from "./schema.js";

/** What applying one captured legacy user did. */
export type LegacyUserOutcome = "created" | "updated" | "unchanged" | "stale" | "conflict";

type UserRow = typeof users.$inferSelect;

const fingerprintOf = (hash: string) => createHash("sha256").update(hash).digest("base64url");

/** The user's changes, or undefined when the row already holds the captured state. */
function changesOf(
  row: UserRow,
  e: UserChanged,
  email: string | undefined,
  passwordChanged: boolean,
): Partial<UserRow> | undefined {
  const set: Partial<UserRow> = {};
  if (email !== undefined && row.email !== email) set.email = email;
  if (row.displayName !== e.displayName) set.displayName = e.displayName;
  // The legacy hash replaces this one only when it changed in legacy: a repeat of the hash
  // already re-hashed here at a login must not undo that re-hash.
  if (passwordChanged && row.passwordHash !== e.passwordHash) set.passwordHash = e.passwordHash;
  return Object.keys(set).length > 0 ? set : undefined;
}

/**
 * Applies a legacy user's captured account, in the consumer's transaction. Idempotent and
 * order-proof like the catalogue's sync: a capture not newer than the one recorded for the user
 * is dropped (`stale`). The account keeps legacy's id (a legacy session's `sub` names it here
 * too) and starts as a customer (legacy's roles are not copied). Email uniqueness: when the
 * captured email belongs to another account here (registered in the mesh), that email is not
 * taken over: a new legacy user is not created, an existing one keeps its old email, and the
 * sync row records the conflict (`conflict`) until a later capture applies cleanly.
 */
export async function applyLegacyUser(tx: AnyTransaction, e: UserChanged): Promise<LegacyUserOutcome> {
  const sequence = Number(e.sequence);
  const fingerprint = fingerprintOf(e.passwordHash);
  const [prev] = await tx
    .select()
    .from(legacyUserSync)
    .where(eq(legacyUserSync.userId, e.userId))
    .for("update");
  if (prev && prev.sequence >= sequence) return "stale";
  const email = normalizeEmail(e.email);
  const [taken] = await tx
    .select({ id: users.id })
    .from(users)
    .where(and(eq(users.email, email), ne(users.id, e.userId)))
    .limit(1);
  const [row] = await tx.select().from(users).where(eq(users.id, e.userId)).for("update");
  let outcome: LegacyUserOutcome;
  if (!row && taken) outcome = "conflict";
  else if (!row) {
    await tx.insert(users).values({
      id: e.userId,
      email,
      displayName: e.displayName,
      passwordHash: e.passwordHash,
      roles: ["customer"],
      createdAt: e.createTime ? timestampDate(e.createTime) : new Date(),
    });
    outcome = "created";
  } else {
    const set = changesOf(row, e, taken ? undefined : email, prev?.passwordFingerprint !== fingerprint);
    if (set) await tx.update(users).set(set).where(eq(users.id, e.userId));
    outcome = taken ? "conflict" : set ? "updated" : "unchanged";
  }
  const conflict = taken ? "email belongs to another account of the users service" : null;
  await tx
    .insert(legacyUserSync)
    .values({ userId: e.userId, sequence, passwordFingerprint: fingerprint, conflict })
    .onConflictDoUpdate({
      target: legacyUserSync.userId,
      set: { sequence, passwordFingerprint: fingerprint, conflict, appliedAt: sql`now()` },
    });
  return outcome;
}
