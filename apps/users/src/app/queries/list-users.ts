import type { UserRepository } from "../../domain/ports.js";
import { InvalidPageTokenError, type User } from "../../domain/user.js";

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export interface ListUsersInput {
  /** 0 means the default; larger than the maximum is coerced to it. */
  pageSize: number;
  pageToken: string;
}

export interface UserPage {
  users: User[];
  nextPageToken: string;
}

const TOKEN_PREFIX = "u1:";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function encodeToken(lastId: string): string {
  return Buffer.from(TOKEN_PREFIX + lastId).toString("base64url");
}

function decodeToken(token: string): string {
  const raw = Buffer.from(token, "base64url").toString();
  const id = raw.slice(TOKEN_PREFIX.length);
  if (!raw.startsWith(TOKEN_PREFIX) || !UUID.test(id)) throw new InvalidPageTokenError();
  return id;
}

/**
 * Pages through users in creation order (ids are UUIDv7). The token is opaque to callers: a
 * keyset cursor, so pages stay stable while users are being added.
 */
export async function listUsers(deps: { users: UserRepository }, input: ListUsersInput): Promise<UserPage> {
  const size = Math.min(input.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const after = input.pageToken ? decodeToken(input.pageToken) : undefined;
  const rows = await deps.users.listAfter(after, size + 1);
  const page = rows.slice(0, size);
  const last = page.at(-1);
  return { users: page, nextPageToken: rows.length > size && last ? encodeToken(last.id) : "" };
}
