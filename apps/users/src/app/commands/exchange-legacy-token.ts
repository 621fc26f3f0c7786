import { type AuthAttempts, beginAttempt } from "../../domain/auth-attempts.js";
import type { IssuedToken, LegacyTokenVerifier, TokenIssuer, UserRepository } from "../../domain/ports.js";
import {
  InvalidLegacyTokenError,
  LegacyExchangeUnavailableError,
  LegacyUserUnknownError,
  type User,
} from "../../domain/user.js";

export interface ExchangeLegacyTokenDeps {
  users: UserRepository;
  tokens: TokenIssuer;
  /** Absent when the service has no LEGACY_TOKEN_SECRET. */
  legacyTokens: LegacyTokenVerifier | undefined;
  /** Login's failed attempts per account: an exchange counts against the same account. */
  attempts: AuthAttempts;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Trades a legacy session token for a mesh access token for the same user id. The roles are
 * this service's (the legacy token's claims are not copied): a user must have been synced here.
 * The signature is checked first: a token that does not verify is refused (UNAUTHENTICATED) and
 * never counted against the account it names, so forged tokens cannot lock a user out (they are
 * the gateway's per-address rate limit's). A verified session then meets Login's lockout: while
 * the user's account (its email, else `legacy:<sub>` for a user not here yet) is locked by
 * failed logins it is refused (RESOURCE_EXHAUSTED) until the window ends; otherwise it counts as
 * a success of that account, whether or not its user has been synced yet.
 */
export async function exchangeLegacyToken(
  deps: ExchangeLegacyTokenDeps,
  legacyToken: string,
): Promise<IssuedToken & { user: User }> {
  if (!deps.legacyTokens) throw new LegacyExchangeUnavailableError();
  const verified = await deps.legacyTokens.verify(legacyToken);
  if (!verified || !UUID.test(verified.userId)) throw new InvalidLegacyTokenError();
  const user = await deps.users.findById(verified.userId.toLowerCase());
  const account = user ? user.email : `legacy:${verified.userId.toLowerCase()}`;
  await beginAttempt(deps.attempts, account);
  await deps.attempts.succeeded(account);
  if (!user) throw new LegacyUserUnknownError(verified.userId);
  return { ...(await deps.tokens.issue(user)), user };
}
