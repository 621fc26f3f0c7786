import { v7 as uuidv7 } from "uuid";
import type { PasswordHasher, UsersUnitOfWork } from "../../domain/ports.js";
import { normalizeEmail, type User } from "../../domain/user.js";

export interface RegisterUserInput {
  email: string;
  password: string;
  displayName: string;
}

export interface RegisterUserDeps {
  uow: UsersUnitOfWork;
  hasher: PasswordHasher;
  /** Called once the registration has committed. */
  countRegistration(): void;
}

/**
 * Creates an account with a normalised, unique email and a hashed password, and records
 * UserRegistered in the same transaction. Every account starts as a customer: no email is ever
 * made an admin by registering (the first admin comes from CreateFirstAdmin).
 */
export async function registerUser(deps: RegisterUserDeps, input: RegisterUserInput): Promise<User> {
  const email = normalizeEmail(input.email);
  const roles = ["customer"];
  const record = {
    id: uuidv7(),
    email,
    displayName: input.displayName.trim(),
    roles,
    createdAt: new Date(),
    passwordHash: await deps.hasher.hash(input.password),
  };
  const { passwordHash: _hidden, ...user } = record;
  await deps.uow.run(async ({ users, events }) => {
    await users.insert(record);
    await events.userRegistered(user);
  });
  deps.countRegistration();
  return user;
}
