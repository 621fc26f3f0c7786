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

/** A legacy session token that does not verify (signature, issuer, algorithm, expiry). */
export class InvalidLegacyTokenError extends Error {
  override readonly name = "InvalidLegacyTokenError";
  constructor() {
    super("legacy_token: the legacy session token is invalid or expired");
  }
}

/** A valid legacy token whose user this service does not hold (not synced from legacy yet). */
export class LegacyUserUnknownError extends Error {
  override readonly name = "LegacyUserUnknownError";
  constructor(readonly id: string) {
    super(`user ${id} of the legacy token is not known here yet (not synced from legacy)`);
  }
}

/** The service was started without LEGACY_TOKEN_SECRET: it cannot check legacy tokens. */
export class LegacyExchangeUnavailableError extends Error {
  override readonly name = "LegacyExchangeUnavailableError";
  constructor() {
    super("legacy token exchange is not configured (LEGACY_TOKEN_SECRET is unset)");
  }
}
