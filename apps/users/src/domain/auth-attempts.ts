/**
 * Authentication attempts per account. Every attempt counts as a failure from the moment it
 * starts until it succeeds (`succeeded` clears the count); past `maxFailures` within `windowS`
 * seconds the account takes no further attempt until the window (which starts at the first
 * failure) ends, whether the next password is right or not. Counting before the password is
 * checked keeps concurrent guesses inside the limit too: no batch of parallel attempts all
 * passes a check made before any of them failed.
 */
export interface AuthAttempts {
  /** Counts an attempt on `account`; returns 0 when it may proceed, else the seconds until it may. */
  begin(account: string): Promise<number>;
  /** After a success: the failures so far no longer count. */
  succeeded(account: string): Promise<void>;
}

/** The account used for CreateFirstAdmin's attempts. */
export const BOOTSTRAP_ACCOUNT = "bootstrap";

export class TooManyFailuresError extends Error {
  override readonly name = "TooManyFailuresError";
  constructor(readonly retryAfterS: number) {
    super(`too many failed attempts for this account; retry in ${retryAfterS}s`);
  }
}

/** Counts the attempt, or refuses it while the account is locked. */
export async function beginAttempt(attempts: AuthAttempts, account: string): Promise<void> {
  const wait = await attempts.begin(account);
  if (wait > 0) throw new TooManyFailuresError(wait);
}
