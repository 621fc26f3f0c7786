/** Who is calling: the authenticated subject (a user id) and the roles in its token. */
export interface Caller {
  subject: string;
  roles: readonly string[];
}

export const ADMIN_ROLE = "admin";

export function isAdmin(caller: Caller): boolean {
  return caller.roles.includes(ADMIN_ROLE);
}

/**
 * The caller may not see what it asked for. Decided from the request alone (before any lookup),
 * so the refusal is the same whether the object exists or not and reveals nothing.
 */
export class AccessDeniedError extends Error {
  override readonly name = "AccessDeniedError";
}

/** A user's own data: the user themselves or an admin. */
export function assertSelfOrAdmin(caller: Caller, userId: string, what: string): void {
  if (caller.subject !== userId && !isAdmin(caller)) {
    throw new AccessDeniedError(`${what} of another user needs the admin role`);
  }
}

/** Every user's data: admins only. */
export function assertAdmin(caller: Caller, what: string): void {
  if (!isAdmin(caller)) throw new AccessDeniedError(`${what} needs the admin role`);
}
