import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

/** Who is calling: the subject and roles the gateway verified (it strips these headers from clients). */
export interface Caller {
  subject: string;
  roles: readonly string[];
}

/** The verified caller, or UNAUTHENTICATED for a call that did not come through the gateway's authentication. */
export function callerOf(ctx: HandlerContext): Caller {
  const subject = ctx.requestHeader.get("x-meshwork-subject");
  if (!subject) {
    throw new ConnectError(
      "no verified caller: call NotificationService through the gateway with a token",
      Code.Unauthenticated,
    );
  }
  const roles = (ctx.requestHeader.get("x-meshwork-roles") ?? "")
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
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
