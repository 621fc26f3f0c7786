import {
  InvalidPageTokenError,
  type Notification,
  type NotificationRepository,
} from "../../domain/notification.js";

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;
const PREFIX = "n1:";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface ListNotificationsInput {
  userId: string;
  pageSize: number;
  pageToken: string;
}

/** A user's notifications, newest first, with an opaque keyset token. */
export async function listNotifications(
  deps: { notifications: NotificationRepository },
  input: ListNotificationsInput,
): Promise<{ notifications: Notification[]; nextPageToken: string }> {
  const size = Math.min(input.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  let before: string | undefined;
  if (input.pageToken) {
    const raw = Buffer.from(input.pageToken, "base64url").toString();
    before = raw.slice(PREFIX.length);
    if (!raw.startsWith(PREFIX) || !UUID.test(before)) throw new InvalidPageTokenError();
  }
  const rows = await deps.notifications.listForUser(input.userId, before, size + 1);
  const page = rows.slice(0, size);
  const last = page.at(-1);
  return {
    notifications: page,
    nextPageToken: rows.length > size && last ? Buffer.from(PREFIX + last.id).toString("base64url") : "",
  };
}
