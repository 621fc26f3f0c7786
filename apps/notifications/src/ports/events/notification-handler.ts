import type { BatchEventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { context } from "@opentelemetry/api";
import { createNotificationRepository } from "../../adapters/db/notification-repository.js";
import { recordNotifications } from "../../app/commands/record-notification.js";

/** What a notification says, made from one event. */
export interface NotificationText {
  userId: string;
  kind: string;
  title: string;
  body: string;
}

/**
 * An event handler that records one notification per event, in the events' transaction (the
 * consumer's inbox rows commit with them, so a redelivery adds nothing), and logs each. Events
 * that arrive together are recorded in one statement.
 */
export function notificationHandler<E>(
  logger: Logger,
  describe: (event: E) => NotificationText,
): BatchEventHandler {
  return {
    async batch(items, tx) {
      const recorded = await recordNotifications(
        { notifications: createNotificationRepository(tx) },
        items.map((it) => ({ ...describe(it.message as unknown as E), eventId: it.event.id })),
      );
      recorded.forEach((n, i) => {
        // Each line in its own event's trace (the batch runs in the first one's).
        const traceContext = items[i]?.traceContext ?? context.active();
        context.with(traceContext, () =>
          logger.info(
            { event_id: n.eventId, user_id: n.userId, notification_id: n.id },
            "notification recorded",
          ),
        );
      });
    },
  };
}
