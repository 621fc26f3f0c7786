/** Something the mesh told a user, made from one domain event. */
export interface Notification {
  id: string;
  userId: string;
  kind: string;
  title: string;
  body: string;
  eventId: string;
  createdAt: Date;
}

/** Storage of notifications. */
export interface NotificationRepository {
  /** Stores these notifications in one statement. */
  insert(notifications: readonly Notification[]): Promise<void>;
  /** A user's notifications with id lower than `beforeId`, newest first. */
  listForUser(userId: string, beforeId: string | undefined, limit: number): Promise<Notification[]>;
}
