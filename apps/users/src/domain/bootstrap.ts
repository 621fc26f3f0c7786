/**
 * The first admin: there is no default admin identity. While no admin exists the service holds a
 * one-time bootstrap secret (generated, or given by the operator); whoever presents it creates the
 * first admin, once.
 */

/** The secret was used already, or there never was one to use because an admin exists. */
export class BootstrapUnavailableError extends Error {
  override readonly name = "BootstrapUnavailableError";
  constructor() {
    super("the bootstrap secret was already used: an admin exists (admins grant further roles)");
  }
}

export class BootstrapSecretMismatchError extends Error {
  override readonly name = "BootstrapSecretMismatchError";
  constructor() {
    super("wrong bootstrap secret");
  }
}

/** The bootstrap secret inside a unit of work. */
export interface BootstrapSecrets {
  /**
   * Checks `secret` (constant-time) against the stored one and marks it consumed, in the caller's
   * transaction: rolled back with it. Throws BootstrapUnavailableError or BootstrapSecretMismatchError.
   */
  consume(secret: string): Promise<void>;
}
