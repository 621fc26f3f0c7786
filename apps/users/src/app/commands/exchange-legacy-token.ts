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
 * The account an exchange attempt counts against: the email of the user the token claims (so
 * Login and the exchange share one count and one lock per account), else `legacy:<sub>` for a
 * user not here; a token naming no user at all is refused before it is counted.
 */
async function accountOf(deps: ExchangeLegacyTokenDeps, legacyToken: string): Promise<string> {
  const claimed = deps.legacyTokens?.claimedSubject(legacyToken)?.toLowerCase();
  if (!claimed || !UUID.test(claimed)) throw new InvalidLegacyTokenError();
  const user = await deps.users.findById(claimed);
  return user ? user.email : `legacy:${claimed}`;
}

/**
 * Trades a legacy session token for a mesh access token for the same user id. The roles are
 * this service's (the legacy token's claims are not copied): a user must have been synced here.
 * Login's lockout applies: each attempt counts as a failure of the claimed user's account until
 * it succeeds, and past the limit the account takes no attempt (RESOURCE_EXHAUSTED) until its
 * window ends, valid token or not.
 */
export async function exchangeLegacyToken(
  deps: ExchangeLegacyTokenDeps,
  legacyToken: string,
): Promise<IssuedToken & { user: User }> {
  if (!deps.legacyTokens) throw new LegacyExchangeUnavailableError();
  const account = await accountOf(deps, legacyToken);
  await beginAttempt(deps.attempts, account);
  const verified = await deps.legacyTokens.verify(legacyToken);
  if (!verified || !UUID.test(verified.userId)) throw new InvalidLegacyTokenError();
  // A valid session is not a failure, whether or not its user has been synced yet.
  await deps.attempts.succeeded(account);
  const user = await deps.users.findById(verified.userId.toLowerCase());
  if (!user) throw new LegacyUserUnknownError(verified.userId);
  return { ...(await deps.tokens.issue(user)), user };
}
