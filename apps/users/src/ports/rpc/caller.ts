import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Caller } from "../../domain/access.js";

/**
 * The caller the gateway authenticated: it verifies the token, strips these headers from clients
 * and sends the token's subject and roles upstream. A call without a subject did not come
 * through the gateway's authentication, so a method that returns a user's data refuses it.
 */
export function callerOf(ctx: HandlerContext): Caller {
  const subject = ctx.requestHeader.get("x-meshwork-subject");
  if (!subject) {
    throw new ConnectError(
      "no verified caller: call UserService through the gateway with a token",
      Code.Unauthenticated,
    );
  }
  const roles = (ctx.requestHeader.get("x-meshwork-roles") ?? "")
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  return { subject, roles };
}
