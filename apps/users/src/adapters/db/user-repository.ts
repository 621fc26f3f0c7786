import { type Database, isUniqueViolation, prepareSelect } from "@meshwork/db";
import { and, asc, eq, gt, sql } from "drizzle-orm";
import type { UserRepository } from "../../domain/ports.js";
import { EmailTakenError, type User, type UserRecord } from "../../domain/user.js";
import { type UsersSchema, users } from "./schema.js";

const publicColumns = {
  id: users.id,
  email: users.email,
  displayName: users.displayName,
  roles: users.roles,
  createdAt: users.createdAt,
};

/**
 * GetUser's query, built once. Drizzle builds a query's SQL text from its parts on every call
 * otherwise: 16% of the users service's CPU under GetUser load (`--cpu-prof` of `npm run bench`'s
 * users service on a Postgres server, 4,600 req/s: `is`, `buildQueryFromSourceParams`, `sql`).
 * Run through `prepareSelect`, not Drizzle's `execute`: 34.8 -> 22.5 µs of CPU per lookup (see there).
 */
function prepareFindById(db: Database<UsersSchema>) {
  return prepareSelect(
    db
      .select(publicColumns)
      .from(users)
      .where(eq(users.id, sql.placeholder("id")))
      .limit(1),
    "users_find_by_id",
  );
}

export function createUserRepository(db: Database<UsersSchema>): UserRepository {
  let findById: ReturnType<typeof prepareFindById> | undefined;
  return {
    async insert(user: UserRecord) {
      try {
        await db.insert(users).values(user);
      } catch (err) {
        if (isUniqueViolation(err, "users_email_unique"))
          throw new EmailTakenError(user.email, { cause: err });
        throw err;
      }
    },
    async findById(id: string): Promise<User | undefined> {
      findById ??= prepareFindById(db);
      const [row] = await findById.execute({ id });
      return row;
    },
    async findByEmail(email: string): Promise<UserRecord | undefined> {
      const [row] = await db.select().from(users).where(eq(users.email, email)).limit(1);
      return row;
    },
    async replacePasswordHash(id: string, from: string, to: string): Promise<boolean> {
      const rows = await db
        .update(users)
        .set({ passwordHash: to })
        .where(and(eq(users.id, id), eq(users.passwordHash, from)))
        .returning({ id: users.id });
      return rows.length > 0;
    },
    async listAfter(afterId: string | undefined, limit: number): Promise<User[]> {
      return db
        .select(publicColumns)
        .from(users)
        .where(afterId ? gt(users.id, afterId) : undefined)
        .orderBy(asc(users.id))
        .limit(limit);
    },
  };
}
