import type { UserRepository } from "../../domain/ports.js";
import { type User, UserNotFoundError } from "../../domain/user.js";

export async function getUser(deps: { users: UserRepository }, id: string): Promise<User> {
  const user = await deps.users.findById(id);
  if (!user) throw new UserNotFoundError(id);
  return user;
}
