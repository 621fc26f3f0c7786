import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { createNotificationRepository } from "../../adapters/db/notification-repository.js";
import { recordNotification } from "../../app/commands/record-notification.js";

/** What a notification says, made from one event. */
export interface NotificationText {
  userId: string;
  kind: string;
  title: string;
  body: string;
}

/**
 * An event handler that records one notification per event, in the event's transaction (the
 * consumer's inbox row commits with it, so a redelivery adds nothing), and logs it.
 */
export function notificationHandler<E>(
  logger: Logger,
  describe: (event: E) => NotificationText,
): EventHandler {
  return async (message, tx, event) => {
    const text = describe(message as unknown as E);
    const n = await recordNotification(
      { notifications: createNotificationRepository(tx) },
      { ...text, eventId: event.id },
    );
    logger.info({ event_id: event.id, user_id: text.userId, notification_id: n.id }, "notification recorded");
  };
}
