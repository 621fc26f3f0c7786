import type { UserRegistered } from "@meshwork/contracts/meshwork/users/v1/events";
import type { BatchEventHandler } from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { notificationHandler } from "./notification-handler.js";

/** UserRegistered -> a welcome notification. */
export function onUserRegistered(logger: Logger): BatchEventHandler {
  return notificationHandler<UserRegistered>(logger, (e) => ({
    userId: e.userId,
    kind: "user.registered",
    title: "Welcome to Meshwork",
    body: `Hello ${e.displayName}, your account ${e.email} is ready.`,
  }));
}
