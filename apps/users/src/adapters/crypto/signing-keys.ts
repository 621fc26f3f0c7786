import { randomUUID, type webcrypto } from "node:crypto";
import type { Database } from "@meshwork/db";
import { and, desc, eq, gte, isNotNull, isNull, lt, ne, or } from "drizzle-orm";
import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import type { IssuedToken, TokenIssuer } from "../../domain/ports.js";
import type { User } from "../../domain/user.js";
import { signingKeys, type UsersSchema } from "../db/schema.js";
import { isSealed, type KeyEncryption } from "./key-encryption.js";

const ALG = "ES256";
type CryptoKey = webcrypto.CryptoKey;

/** The key tokens are signed with now, and every public key a verifier must know. */
export interface KeySet {
  kid: string;
  privateKey: CryptoKey;
  /** The JWKS document served at `/.well-known/jwks.json`. */
  jwks: { keys: JWK[] };
}

export interface SigningKeysOptions {
  encryption: KeyEncryption;
  /**
   * How long a retired key stays in the JWKS (ms): long enough for every token it signed to
   * expire (the token lifetime, plus the time other instances take to notice the rotation, plus
   * clock skew). Then it is dropped, and its row deleted.
   */
  overlapMs: number;
  /** How often an instance reloads the keys, to follow a rotation made by another one (ms). */
  refreshMs: number;
  onError?: (err: unknown) => void;
}

/** The outcome of a rotation: the new signing key, and the keys it retired and when they go. */
export interface Rotation {
  kid: string;
  retired: string[];
  retiredDroppedAt: Date;
}

/**
 * The service's signing keys, kept in its database (private halves sealed by `encryption` when a
 * key encryption key is configured) so every instance signs with the same key and keys survive
 * restarts. The newest unretired key signs; retired keys stay published until `overlapMs` after
 * their retirement, so tokens they signed keep verifying until they expire; then they are dropped.
 * Instances reload every `refreshMs` to follow a rotation made elsewhere.
 */
export interface SigningKeys {
  current(): KeySet;
  /** Reloads from the database (creating the first key, sealing keys stored in the clear). */
  refresh(): Promise<KeySet>;
  /** A new key signs from now on; every other active key is retired (published until overlap). */
  rotate(): Promise<Rotation>;
  close(): void;
}

async function newKeyRow(encryption: KeyEncryption) {
  const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
  const kid = randomUUID();
  return {
    kid,
    algorithm: ALG,
    privateJwk: encryption.seal(kid, { ...(await exportJWK(privateKey)), kid, alg: ALG }),
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: ALG, use: "sig" },
  };
}

export async function createSigningKeys(
  db: Database<UsersSchema>,
  options: SigningKeysOptions,
): Promise<SigningKeys> {
  const { encryption, overlapMs } = options;
  const cutoff = () => new Date(Date.now() - overlapMs);

  const load = async (): Promise<KeySet> => {
    // One cutoff per load: a key crossing it between two statements would be neither kept nor gone.
    const before = cutoff();
    // Keys retired longer ago than the overlap are gone: no token they signed is still valid.
    await db
      .delete(signingKeys)
      .where(and(isNotNull(signingKeys.retiredAt), lt(signingKeys.retiredAt, before)));
    const published = () =>
      db
        .select()
        .from(signingKeys)
        .where(or(isNull(signingKeys.retiredAt), gte(signingKeys.retiredAt, before)))
        .orderBy(desc(signingKeys.createdAt), desc(signingKeys.kid));
    let rows = await published();
    if (!rows.some((r) => r.retiredAt === null)) {
      await db
        .insert(signingKeys)
        .values(await newKeyRow(encryption))
        .onConflictDoNothing();
      rows = await published();
    }
    // Instances started together may each have added one: all of them converge on the newest.
    const current = rows.find((r) => r.retiredAt === null);
    if (!current) throw new Error("no signing key could be stored");
    // Opening every key at start-up: a key that cannot be opened stops the service now, clearly.
    for (const row of rows) {
      const jwk = encryption.open(row.kid, row.privateJwk);
      if (encryption.enabled && !isSealed(row.privateJwk)) {
        // Stored in the clear before encryption was configured: sealed in place.
        await db
          .update(signingKeys)
          .set({ privateJwk: encryption.seal(row.kid, jwk) })
          .where(eq(signingKeys.kid, row.kid));
      }
    }
    const privateKey = (await importJWK(encryption.open(current.kid, current.privateJwk), ALG)) as CryptoKey;
    return { kid: current.kid, privateKey, jwks: { keys: rows.map((r) => r.publicJwk as JWK) } };
  };

  let keys = await load();
  const refresh = async () => {
    keys = await load();
    return keys;
  };
  const timer = setInterval(() => {
    refresh().catch((err: unknown) => options.onError?.(err));
  }, options.refreshMs);
  timer.unref();

  return {
    current: () => keys,
    refresh,
    async rotate() {
      const row = await newKeyRow(encryption);
      const retired = await db.transaction(async (tx) => {
        await tx.insert(signingKeys).values(row);
        return tx
          .update(signingKeys)
          .set({ retiredAt: new Date() })
          .where(and(isNull(signingKeys.retiredAt), ne(signingKeys.kid, row.kid)))
          .returning({ kid: signingKeys.kid, retiredAt: signingKeys.retiredAt });
      });
      await refresh();
      const at = retired[0]?.retiredAt ?? new Date();
      return {
        kid: row.kid,
        retired: retired.map((r) => r.kid),
        retiredDroppedAt: new Date(at.getTime() + overlapMs),
      };
    },
    close: () => clearInterval(timer),
  };
}

export interface TokenSettings {
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

/**
 * Issues ES256 JWTs with `sub`, `iss`, `aud`, `iat`, `exp`, `email`, `roles` and the `kid` header,
 * signed by the current key.
 */
export function createJwtIssuer(keys: () => KeySet, settings: TokenSettings): TokenIssuer {
  return {
    async issue(user: User): Promise<IssuedToken> {
      const now = Math.floor(Date.now() / 1000);
      const exp = now + settings.ttlSeconds;
      const { kid, privateKey } = keys();
      const token = await new SignJWT({ email: user.email, roles: user.roles })
        .setProtectedHeader({ alg: ALG, kid, typ: "JWT" })
        .setSubject(user.id)
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setIssuedAt(now)
        .setExpirationTime(exp)
        .sign(privateKey);
      return { token, expiresAt: new Date(exp * 1000) };
    },
  };
}
