import { assertSelfOrAdmin, type Caller } from "../../domain/access.js";
import type { UserRepository } from "../../domain/ports.js";
import { type User, UserNotFoundError } from "../../domain/user.js";

/** One user's profile, for that user or an admin; anyone else is refused before the lookup. */
export async function getUser(deps: { users: UserRepository }, caller: Caller, id: string): Promise<User> {
  assertSelfOrAdmin(caller, id, "the profile");
  const user = await deps.users.findById(id);
  if (!user) throw new UserNotFoundError(id);
  return user;
}
