import { v7 as uuidv7 } from "uuid";
import type { Notification, NotificationRepository } from "../../domain/notification.js";

export interface RecordNotificationInput {
  userId: string;
  kind: string;
  title: string;
  body: string;
  eventId: string;
}

/**
 * Stores a notification for each input, in one statement. Runs inside the transaction of the
 * events they come from (with their inbox rows).
 */
export async function recordNotifications(
  deps: { notifications: NotificationRepository },
  inputs: readonly RecordNotificationInput[],
): Promise<Notification[]> {
  const createdAt = new Date();
  const recorded = inputs.map((input) => ({ id: uuidv7(), createdAt, ...input }));
  await deps.notifications.insert(recorded);
  return recorded;
}
