import { keysetTokens, pageSize } from "@meshwork/db";
import type { Notification, NotificationRepository } from "../../domain/notification.js";

export interface ListNotificationsInput {
  userId: string;
  pageSize: number;
  pageToken: string;
}

const tokens = keysetTokens("n1:", "ListNotifications");

/** A user's notifications, newest first, with an opaque keyset token. */
export async function listNotifications(
  deps: { notifications: NotificationRepository },
  input: ListNotificationsInput,
): Promise<{ notifications: Notification[]; nextPageToken: string }> {
  const size = pageSize(input.pageSize);
  const before = input.pageToken ? tokens.decode(input.pageToken) : undefined;
  const { items, nextPageToken } = tokens.page(
    await deps.notifications.listForUser(input.userId, before, size + 1),
    size,
  );
  return { notifications: items, nextPageToken };
}
