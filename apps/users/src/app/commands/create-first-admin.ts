import { v7 as uuidv7 } from "uuid";
import { type AuthAttempts, BOOTSTRAP_ACCOUNT, beginAttempt } from "../../domain/auth-attempts.js";
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
 * the secret unused). Every attempt counts against the `bootstrap` account until one succeeds.
 */
export async function createFirstAdmin(
  deps: CreateFirstAdminDeps,
  input: CreateFirstAdminInput,
): Promise<User> {
  await beginAttempt(deps.attempts, BOOTSTRAP_ACCOUNT);
  const record = {
    id: uuidv7(),
    email: normalizeEmail(input.email),
    displayName: input.displayName.trim(),
    roles: ["customer", "admin"],
    createdAt: new Date(),
    passwordHash: await deps.hasher.hash(input.password),
  };
  const { passwordHash: _hidden, ...user } = record;
  await deps.uow.run(async ({ users, events, bootstrap }) => {
    await bootstrap.consume(input.bootstrapSecret);
    await users.insert(record);
    await events.userRegistered(user);
  });
  await deps.attempts.succeeded(BOOTSTRAP_ACCOUNT);
  deps.countRegistration();
  return user;
}
