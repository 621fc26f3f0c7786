import type { Database } from "@meshwork/db";
import { eq, lt, sql } from "drizzle-orm";
import type { AuthAttempts } from "../../domain/auth-attempts.js";
import { authFailures, type UsersSchema } from "./schema.js";

export interface AuthFailureLimits {
  maxFailures: number;
  windowS: number;
}

/**
 * Attempt counts in the users database, so every instance sees the same ones; one upsert per
 * attempt, atomic per account. The window's clock is the database's (`now()`). Rows whose window
 * ended are deleted now and then, so emails tried once do not pile up.
 */
export function createAuthAttempts(db: Database<UsersSchema>, limits: AuthFailureLimits): AuthAttempts {
  const window = sql`make_interval(secs => ${limits.windowS})`;
  let sincePrune = 0;
  return {
    async begin(account) {
      const expired = sql`${authFailures.windowStart} <= now() - ${window}`;
      const [row] = await db
        .insert(authFailures)
        .values({ account, failures: 1, windowStart: sql`now()` })
        .onConflictDoUpdate({
          target: authFailures.account,
          set: {
            failures: sql`case when ${expired} then 1 else ${authFailures.failures} + 1 end`,
            windowStart: sql`case when ${expired} then now() else ${authFailures.windowStart} end`,
          },
        })
        .returning({
          failures: authFailures.failures,
          remaining: sql<string>`ceil(extract(epoch from (${authFailures.windowStart} + ${window} - now())))`,
        });
      if (++sincePrune >= 256) {
        sincePrune = 0;
        await db.delete(authFailures).where(lt(authFailures.windowStart, sql`now() - ${window}`));
      }
      if (!row || row.failures <= limits.maxFailures) return 0;
      return Math.max(1, Number(row.remaining));
    },
    async succeeded(account) {
      await db.delete(authFailures).where(eq(authFailures.account, account));
    },
  };
}
