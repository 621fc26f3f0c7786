import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { requireCaller } from "@meshwork/runtime";

/** Who is calling: the subject and roles the runtime verified (the gateway's signed assertion). */
export interface Caller {
  subject: string;
  roles: readonly string[];
}

/** The verified caller, or UNAUTHENTICATED for a call that did not come through the gateway's authentication. */
export function callerOf(ctx: HandlerContext): Caller {
  const { subject, roles } = requireCaller(ctx, "NotificationService");
  return { subject, roles };
}

/**
 * A user's notifications are theirs (and an admin's) to read. Decided from the request before
 * any lookup, so the refusal (PERMISSION_DENIED) says nothing about whether the user exists.
 */
export function assertMayRead(caller: Caller, userId: string): void {
  if (caller.subject !== userId && !caller.roles.includes("admin")) {
    throw new ConnectError("the notifications of another user need the admin role", Code.PermissionDenied);
  }
}
