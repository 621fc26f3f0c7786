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
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Trades a legacy session token for a mesh access token for the same user id. The roles are
 * this service's (the legacy token's claims are not copied): a user must have been synced here.
 */
export async function exchangeLegacyToken(
  deps: ExchangeLegacyTokenDeps,
  legacyToken: string,
): Promise<IssuedToken & { user: User }> {
  if (!deps.legacyTokens) throw new LegacyExchangeUnavailableError();
  const verified = await deps.legacyTokens.verify(legacyToken);
  if (!verified || !UUID.test(verified.userId)) throw new InvalidLegacyTokenError();
  const user = await deps.users.findById(verified.userId.toLowerCase());
  if (!user) throw new LegacyUserUnknownError(verified.userId);
  return { ...(await deps.tokens.issue(user)), user };
}
