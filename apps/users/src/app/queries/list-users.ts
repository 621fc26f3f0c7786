import { keysetTokens, pageSize } from "@meshwork/db";
import { assertAdmin, type Caller } from "../../domain/access.js";
import type { UserRepository } from "../../domain/ports.js";
import type { User } from "../../domain/user.js";

export interface ListUsersInput {
  /** 0 means the default; larger than the maximum is coerced to it. */
  pageSize: number;
  pageToken: string;
}

export interface UserPage {
  users: User[];
  nextPageToken: string;
}

const tokens = keysetTokens("u1:", "ListUsers");

/**
 * Pages through users in creation order (ids are UUIDv7). The token is opaque to callers: a
 * keyset cursor, so pages stay stable while users are being added.
 */
export async function listUsers(
  deps: { users: UserRepository },
  caller: Caller,
  input: ListUsersInput,
): Promise<UserPage> {
  assertAdmin(caller, "listing users");
  const size = pageSize(input.pageSize);
  const after = input.pageToken ? tokens.decode(input.pageToken) : undefined;
  const { items, nextPageToken } = tokens.page(await deps.users.listAfter(after, size + 1), size);
  return { users: items, nextPageToken };
}
