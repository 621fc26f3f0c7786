import { v7 as uuidv7 } from "uuid";
import { type AuthAttempts, assertNotLocked, BOOTSTRAP_ACCOUNT } from "../../domain/auth-attempts.js";
import { BootstrapSecretMismatchError } from "../../domain/bootstrap.js";
import type { PasswordHasher, UsersUnitOfWork } from "../../domain/ports.js";
import { normalizeEmail, type User } from "../../domain/user.js";

export interface CreateFirstAdminInput {
  bootstrapSecret: string;
  email: string;
  password: string;
  displayName: string;
}

export interface CreateFirstAdminDeps {
  uow: UsersUnitOfWork;
  hasher: PasswordHasher;
  attempts: AuthAttempts;
  countRegistration(): void;
}

/**
 * Creates the first admin with the one-time bootstrap secret. The secret is consumed, the account
 * created and UserRegistered recorded in one transaction: all of it or none (a taken email leaves
 * the secret unused). Wrong secrets count as failed authentications of the `bootstrap` account.
 */
export async function createFirstAdmin(
  deps: CreateFirstAdminDeps,
  input: CreateFirstAdminInput,
): Promise<User> {
  await assertNotLocked(deps.attempts, BOOTSTRAP_ACCOUNT);
  const record = {
    id: uuidv7(),
    email: normalizeEmail(input.email),
    displayName: input.displayName.trim(),
    roles: ["customer", "admin"],
    createdAt: new Date(),
    passwordHash: await deps.hasher.hash(input.password),
  };
  const { passwordHash: _hidden, ...user } = record;
  try {
    await deps.uow.run(async ({ users, events, bootstrap }) => {
      await bootstrap.consume(input.bootstrapSecret);
      await users.insert(record);
      await events.userRegistered(user);
    });
  } catch (err) {
    if (err instanceof BootstrapSecretMismatchError) await deps.attempts.recordFailure(BOOTSTRAP_ACCOUNT);
    throw err;
  }
  await deps.attempts.reset(BOOTSTRAP_ACCOUNT);
  deps.countRegistration();
  return user;
}
