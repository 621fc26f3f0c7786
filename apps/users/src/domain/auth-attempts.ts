/**
 * Failed authentications per account. After `maxFailures` failures within `windowS` seconds the
 * account takes no further attempts until the window (which starts at the first failure) ends,
 * whether the next password is right or not: guessing costs a window per few guesses.
 */
export interface AuthAttempts {
  /** Seconds until `account` takes attempts again; 0 when it does now. */
  lockedFor(account: string): Promise<number>;
  recordFailure(account: string): Promise<void>;
  /** After a success: the failures so far no longer count. */
  reset(account: string): Promise<void>;
}

/** The account used for CreateFirstAdmin's wrong secrets. */
export const BOOTSTRAP_ACCOUNT = "bootstrap";

export class TooManyFailuresError extends Error {
  override readonly name = "TooManyFailuresError";
  constructor(readonly retryAfterS: number) {
    super(`too many failed attempts for this account; retry in ${retryAfterS}s`);
  }
}

/** Refuses the attempt while the account is locked. */
export async function assertNotLocked(attempts: AuthAttempts, account: string): Promise<void> {
  const wait = await attempts.lockedFor(account);
  if (wait > 0) throw new TooManyFailuresError(wait);
}
