import { randomUUID, type webcrypto } from "node:crypto";
import type { Database } from "@meshwork/db";
import { asc, isNull } from "drizzle-orm";
import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import type { IssuedToken, TokenIssuer } from "../../domain/ports.js";
import type { User } from "../../domain/user.js";
import { signingKeys, type UsersSchema } from "../db/schema.js";

const ALG = "ES256";
type CryptoKey = webcrypto.CryptoKey;

/** The signing keys of the service: the current private key and every public key to publish. */
export interface KeySet {
  kid: string;
  privateKey: CryptoKey;
  /** The JWKS document served at `/.well-known/jwks.json`. */
  jwks: { keys: JWK[] };
}

/**
 * Loads the signing keys from the database, creating the first one on first start. Every
 * instance converges on the oldest unretired key, so instances started together agree.
 */
export async function loadSigningKeys(db: Database<UsersSchema>): Promise<KeySet> {
  let rows = await db
    .select()
    .from(signingKeys)
    .where(isNull(signingKeys.retiredAt))
    .orderBy(asc(signingKeys.createdAt));
  if (rows.length === 0) {
    const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
    const kid = randomUUID();
    await db
      .insert(signingKeys)
      .values({
        kid,
        algorithm: ALG,
        privateJwk: { ...(await exportJWK(privateKey)), kid, alg: ALG },
        publicJwk: { ...(await exportJWK(publicKey)), kid, alg: ALG, use: "sig" },
      })
      .onConflictDoNothing();
    rows = await db
      .select()
      .from(signingKeys)
      .where(isNull(signingKeys.retiredAt))
      .orderBy(asc(signingKeys.createdAt));
  }
  const current = rows[0];
  if (!current) throw new Error("no signing key could be stored");
  const privateKey = (await importJWK(current.privateJwk as JWK, ALG)) as CryptoKey;
  return { kid: current.kid, privateKey, jwks: { keys: rows.map((r) => r.publicJwk as JWK) } };
}

export interface TokenSettings {
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

/** Issues ES256 JWTs with `sub`, `iss`, `aud`, `iat`, `exp`, `email`, `roles` and the `kid` header. */
export function createJwtIssuer(keys: KeySet, settings: TokenSettings): TokenIssuer {
  return {
    async issue(user: User): Promise<IssuedToken> {
      const now = Math.floor(Date.now() / 1000);
      const exp = now + settings.ttlSeconds;
      const token = await new SignJWT({ email: user.email, roles: user.roles })
        .setProtectedHeader({ alg: ALG, kid: keys.kid, typ: "JWT" })
        .setSubject(user.id)
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setIssuedAt(now)
        .setExpirationTime(exp)
        .sign(keys.privateKey);
      return { token, expiresAt: new Date(exp * 1000) };
    },
  };
}
