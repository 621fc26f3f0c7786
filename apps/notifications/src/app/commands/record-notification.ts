import { v7 as uuidv7 } from "uuid";
import type { Notification, NotificationRepository } from "../../domain/notification.js";

export interface RecordNotificationInput {
  userId: string;
  kind: string;
  title: string;
  body: string;
  eventId: string;
}

/** Stores a notification for a user. Runs inside the event's transaction (with its inbox row). */
export async function recordNotification(
  deps: { notifications: NotificationRepository },
  input: RecordNotificationInput,
): Promise<Notification> {
  const notification = { id: uuidv7(), createdAt: new Date(), ...input };
  await deps.notifications.insert(notification);
  return notification;
}
