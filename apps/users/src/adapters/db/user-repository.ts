import { type Database, isUniqueViolation } from "@meshwork/db";
import { asc, eq, gt } from "drizzle-orm";
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

export function createUserRepository(db: Database<UsersSchema>): UserRepository {
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
      const [row] = await db.select(publicColumns).from(users).where(eq(users.id, id)).limit(1);
      return row;
    },
    async findByEmail(email: string): Promise<UserRecord | undefined> {
      const [row] = await db.select().from(users).where(eq(users.email, email)).limit(1);
      return row;
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
