import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Database } from "@meshwork/db";
import { eq, isNull, sql } from "drizzle-orm";
import {
  BootstrapSecretMismatchError,
  type BootstrapSecrets,
  BootstrapUnavailableError,
} from "../../domain/bootstrap.js";
import { bootstrapSecret, type UsersSchema, users } from "./schema.js";

const digest = (secret: string): Buffer => createHash("sha256").update(secret, "utf8").digest();

/** The bootstrap secret in a transaction: checked in constant time, consumed with the row locked. */
export function createBootstrapSecrets(tx: Database<UsersSchema>): BootstrapSecrets {
  return {
    async consume(secret) {
      const [row] = await tx.select().from(bootstrapSecret).where(eq(bootstrapSecret.id, 1)).for("update");
      if (!row || row.consumedAt) throw new BootstrapUnavailableError();
      const stored = Buffer.from(row.secretHash, "hex");
      const given = digest(secret);
      if (stored.length !== given.length || !timingSafeEqual(stored, given))
        throw new BootstrapSecretMismatchError();
      await tx.update(bootstrapSecret).set({ consumedAt: new Date() }).where(eq(bootstrapSecret.id, 1));
    },
  };
}

export interface BootstrapSettings {
  /** A file holding the operator's secret (a mounted Secret); read at start-up, wins over `secret`. */
  secretFile?: string | undefined;
  /** A secret the operator gave in the environment. */
  secret?: string | undefined;
  /** Where to write a generated secret, owner-only. */
  outFile: string;
}

export type BootstrapState =
  | { state: "admin-exists" }
  | { state: "consumed" }
  | { state: "configured" }
  | { state: "generated"; file: string };

/**
 * At start-up: when no admin exists and the secret was not consumed, stores the hash of the given
 * secret, or generates a fresh one (256 random bits) and writes it to `outFile` with mode 0600
 * (its directory 0700). A generated secret replaces an unused earlier one, so the newest file is
 * the valid one. The secret itself is never logged or returned.
 */
export async function prepareBootstrapSecret(
  db: Database<UsersSchema>,
  settings: BootstrapSettings,
): Promise<BootstrapState> {
  const [admin] = await db
    .select({ id: users.id })
    .from(users)
    .where(sql`'admin' = any(${users.roles})`)
    .limit(1);
  if (admin) return { state: "admin-exists" };
  const [row] = await db.select().from(bootstrapSecret).where(eq(bootstrapSecret.id, 1));
  if (row?.consumedAt) return { state: "consumed" };
  const given = givenSecret(settings);
  const secret = given ?? randomBytes(32).toString("base64url");
  const secretHash = digest(secret).toString("hex");
  await db
    .insert(bootstrapSecret)
    .values({ id: 1, secretHash })
    .onConflictDoUpdate({
      target: bootstrapSecret.id,
      set: { secretHash, createdAt: new Date() },
      setWhere: isNull(bootstrapSecret.consumedAt),
    });
  if (given !== undefined) return { state: "configured" };
  writeOwnerOnly(settings.outFile, `${secret}\n`);
  return { state: "generated", file: settings.outFile };
}

/** Creates the file anew (so an older file's wider mode cannot survive) with mode 0600. */
export function writeOwnerOnly(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  rmSync(file, { force: true });
  writeFileSync(file, text, { mode: 0o600, flag: "wx" });
}

/** The operator's secret: the file's content (trimmed) or the variable, if either is set. */
function givenSecret(settings: BootstrapSettings): string | undefined {
  if (!settings.secretFile) return settings.secret;
  const secret = readFileSync(settings.secretFile, "utf8").trim();
  if (secret.length < 16 || secret.length > 256) {
    throw new Error(`USERS_BOOTSTRAP_SECRET_FILE: ${settings.secretFile} must hold 16 to 256 characters`);
  }
  return secret;
}
