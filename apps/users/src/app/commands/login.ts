import type { IssuedToken, PasswordHasher, TokenIssuer, UserRepository } from "../../domain/ports.js";
import { InvalidCredentialsError, normalizeEmail, type User } from "../../domain/user.js";

export interface LoginInput {
  email: string;
  password: string;
}

export interface LoginDeps {
  users: UserRepository;
  hasher: PasswordHasher;
  tokens: TokenIssuer;
  /** A hash of a random password, verified when the email is unknown so both paths cost the same. */
  decoyHash: string;
}

/**
 * Exchanges credentials for an access token. An unknown email and a wrong password fail the
 * same way and take about the same time (a hash is verified either way).
 */
export async function login(deps: LoginDeps, input: LoginInput): Promise<IssuedToken & { user: User }> {
  const record = await deps.users.findByEmail(normalizeEmail(input.email));
  const ok = await deps.hasher.verify(record?.passwordHash ?? deps.decoyHash, input.password);
  if (!record || !ok) throw new InvalidCredentialsError();
  const { passwordHash: _hidden, ...user } = record;
  return { ...(await deps.tokens.issue(user)), user };
}
