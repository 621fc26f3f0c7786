import { withDeadline } from "./watchdog.js";

/** A login: the user's id and the call options that carry its token. */
export interface Login {
  id: string;
  auth: { headers: { authorization: string } };
}

/**
 * A user's login that stays valid: access tokens expire (the users service's default is 1 h),
 * and the 10,000-order run of seed 20261208 outlived its clients' tokens: from then on every call
 * was UNAUTHENTICATED "token expired", the clients retried each order for 90 s, and nothing was
 * acknowledged again. A session logs in again at half its token's lifetime, and on `renew()`
 * (a call said the token expired); concurrent renewals share one login.
 */
export function createSession(login: () => Promise<Login>, tokenTtlS = 3_600, loginTimeoutMs = 30_000) {
  let current: (Login & { at: number }) | undefined;
  let pending: Promise<Login & { at: number }> | undefined;
  const renew = () => {
    pending ??= withDeadline("a login", loginTimeoutMs, login)
      .then((s) => {
        current = { ...s, at: Date.now() };
        return current;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };
  return {
    /** The user's id (empty before the first login). */
    get id() {
      return current?.id ?? "";
    },
    renew,
    /** The call options' headers with a token that is not near its expiry. */
    async auth(): Promise<Login["auth"]> {
      const s = current && Date.now() - current.at < tokenTtlS * 500 ? current : await renew();
      return s.auth;
    },
  };
}
