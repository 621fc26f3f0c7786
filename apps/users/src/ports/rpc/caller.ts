import type { HandlerContext } from "@connectrpc/connect";
import { requireCaller } from "@meshwork/runtime";
import type { Caller } from "../../domain/access.js";

/**
 * The caller the runtime verified (the gateway's signed assertion), or UNAUTHENTICATED: a method
 * that returns a user's data refuses a call that did not come through the gateway's authentication.
 */
export function callerOf(ctx: HandlerContext): Caller {
  const { subject, roles } = requireCaller(ctx, "UserService");
  return { subject, roles };
}
