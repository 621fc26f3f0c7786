/** A user account inside the users service. The password hash never leaves the service. */
export interface User {
  id: string;
  email: string;
  displayName: string;
  roles: string[];
  createdAt: Date;
}

/** A user with its password hash, as the repository stores it. */
export interface UserRecord extends User {
  passwordHash: string;
}

/** Trims and lower-cases an email address, so one mailbox is one account. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export class EmailTakenError extends Error {
  override readonly name = "EmailTakenError";
  constructor(
    readonly email: string,
    options?: ErrorOptions,
  ) {
    super(`a user with email ${email} already exists`, options);
  }
}

/** Wrong password and unknown email alike: callers must not learn which. */
export class InvalidCredentialsError extends Error {
  override readonly name = "InvalidCredentialsError";
  constructor() {
    super("invalid email or password");
  }
}

export class UserNotFoundError extends Error {
  override readonly name = "UserNotFoundError";
  constructor(readonly id: string) {
    super(`user ${id} not found`);
  }
}
