import type { Queryable } from "@meshwork/db";
import { and, desc, eq, lt } from "drizzle-orm";
import type { Notification, NotificationRepository } from "../../domain/notification.js";
import { notifications } from "./schema.js";

export function createNotificationRepository(db: Queryable): NotificationRepository {
  return {
    async insert(ns: readonly Notification[]) {
      if (ns.length > 0) await db.insert(notifications).values([...ns]);
    },
    async listForUser(userId, beforeId, limit) {
      return db
        .select()
        .from(notifications)
        .where(and(eq(notifications.userId, userId), beforeId ? lt(notifications.id, beforeId) : undefined))
        .orderBy(desc(notifications.id))
        .limit(limit);
    },
  };
}
