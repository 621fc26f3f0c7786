import { jwtVerify } from "jose";
import type { LegacyTokenVerifier } from "../../domain/ports.js";

/**
 * Verifies the legacy monolith's session tokens: HS256 JWTs with issuer "legacy" signed with its
 * LEGACY_TOKEN_SECRET (apps/legacy signs them at POST /api/login). Only HS256 is accepted, so a
 * token cannot choose a weaker or keyless algorithm; `exp` is required and checked.
 */
export function createLegacyTokenVerifier(secret: string): LegacyTokenVerifier {
  const key = new TextEncoder().encode(secret);
  return {
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key, {
          issuer: "legacy",
          algorithms: ["HS256"],
          requiredClaims: ["sub", "exp"],
        });
        return typeof payload.sub === "string" ? { userId: payload.sub } : undefined;
      } catch {
        return undefined;
      }
    },
  };
}
