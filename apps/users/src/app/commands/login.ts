import type { Logger } from "@meshwork/telemetry";
import { type AuthAttempts, beginAttempt } from "../../domain/auth-attempts.js";
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
  /** Failed logins per account (the normalised email). */
  attempts: AuthAttempts;
  /** Where a failed re-hash is reported (without secrets). */
  logger: Pick<Logger, "warn">;
}

/**
 * Exchanges credentials for an access token. An unknown email and a wrong password fail the
 * same way and take about the same time (a hash is verified either way), and both count as a
 * failure of that email: past the limit the email takes no attempt until its window ends, right
 * password or not (an unknown email is locked alike, so locking reveals nothing either). A user
 * synced from the legacy monolith logs in with their legacy password; that hash is then replaced
 * by an Argon2id one (compare-and-set: a password changed meanwhile is left alone), best-effort:
 * a failure there is logged and the login still succeeds (the next login tries again).
 */
export async function login(deps: LoginDeps, input: LoginInput): Promise<IssuedToken & { user: User }> {
  const email = normalizeEmail(input.email);
  await beginAttempt(deps.attempts, email);
  const record = await deps.users.findByEmail(email);
  const ok = await deps.hasher.verify(record?.passwordHash ?? deps.decoyHash, input.password);
  if (!record || !ok) throw new InvalidCredentialsError();
  await deps.attempts.succeeded(email);
  if (deps.hasher.needsRehash(record.passwordHash)) await rehash(deps, record, input.password);
  const { passwordHash: _hidden, ...user } = record;
  return { ...(await deps.tokens.issue(user)), user };
}

/** A hash synced from legacy (scrypt) moves to this service's scheme; a failure only warns. */
async function rehash(deps: LoginDeps, record: { id: string; passwordHash: string }, password: string) {
  try {
    await deps.users.replacePasswordHash(record.id, record.passwordHash, await deps.hasher.hash(password));
  } catch (err) {
    // The error's name and code only: a failed query's message can carry its parameters (the hash).
    const error = err instanceof Error ? err.name : typeof err;
    const code = (err as { code?: unknown } | undefined)?.code;
    deps.logger.warn({ user_id: record.id, error, code }, "re-hashing a legacy password at login failed");
  }
}
