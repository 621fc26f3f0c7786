import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  NotificationSchema,
  type NotificationService,
} from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { InvalidPageTokenError } from "@meshwork/db";
import { listNotifications } from "../../app/queries/list-notifications.js";
import type { NotificationRepository } from "../../domain/notification.js";
import { assertMayRead, callerOf } from "./caller.js";

export function createNotificationServiceHandlers(deps: {
  notifications: NotificationRepository;
}): ServiceImpl<typeof NotificationService> {
  return {
    async listNotifications(req, ctx) {
      assertMayRead(callerOf(ctx), req.userId);
      try {
        const page = await listNotifications(deps, {
          userId: req.userId,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        });
        return {
          notifications: page.notifications.map((n) =>
            create(NotificationSchema, { ...n, createTime: timestampFromDate(n.createdAt) }),
          ),
          nextPageToken: page.nextPageToken,
        };
      } catch (err) {
        if (err instanceof InvalidPageTokenError) throw new ConnectError(err.message, Code.InvalidArgument);
        throw err;
      }
    },
  };
}
