import type { BootstrapSecrets } from "./bootstrap.js";
import type { User, UserRecord } from "./user.js";

/** Storage of accounts. */
export interface UserRepository {
  /** Inserts; throws EmailTakenError when the email is already registered. */
  insert(user: UserRecord): Promise<void>;
  findById(id: string): Promise<User | undefined>;
  findByEmail(email: string): Promise<UserRecord | undefined>;
  /** Replaces the password hash if it is still `from` (a concurrent change wins); true if replaced. */
  replacePasswordHash(id: string, from: string, to: string): Promise<boolean>;
  /** Up to `limit` users with id greater than `afterId`, in id order. */
  listAfter(afterId: string | undefined, limit: number): Promise<User[]>;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
  /** True for a hash of another scheme (legacy's scrypt): re-hash it after a successful login. */
  needsRehash(hash: string): boolean;
}

/** An access token and when it stops being valid. */
export interface IssuedToken {
  token: string;
  expiresAt: Date;
}

/** Checks the legacy monolith's session tokens (strangler fig: an old client's session moves over). */
export interface LegacyTokenVerifier {
  /** The token's user id, or undefined when it does not verify or has expired. */
  verify(token: string): Promise<{ userId: string } | undefined>;
}

export interface TokenIssuer {
  issue(user: User): Promise<IssuedToken>;
}

/** The events the users service publishes; written to the outbox, published by the relay. */
export interface UserEvents {
  userRegistered(user: User): Promise<void>;
}

/** Runs work in one transaction: the state change and its events commit together or not at all. */
export interface UsersUnitOfWork {
  run<T>(
    work: (scope: { users: UserRepository; events: UserEvents; bootstrap: BootstrapSecrets }) => Promise<T>,
  ): Promise<T>;
}
