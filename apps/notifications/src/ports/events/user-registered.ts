import type { UserRegistered } from "@meshwork/contracts/meshwork/users/v1/events";
import type { EventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { createNotificationRepository } from "../../adapters/db/notification-repository.js";
import { recordNotification } from "../../app/commands/record-notification.js";

/** UserRegistered -> a welcome notification, in the event's transaction. */
export function onUserRegistered(logger: Logger): EventHandler {
  return async (message, tx, event) => {
    const e = message as unknown as UserRegistered;
    const n = await recordNotification(
      { notifications: createNotificationRepository(tx) },
      {
        userId: e.userId,
        kind: "user.registered",
        title: "Welcome to Meshwork",
        body: `Hello ${e.displayName}, your account ${e.email} is ready.`,
        eventId: event.id,
      },
    );
    logger.info({ event_id: event.id, user_id: e.userId, notification_id: n.id }, "notification recorded");
  };
}
