/**
 * The monolith's error answers: `{"error": "<code>", "message": "..."}` with the HTTP status of
 * the code. The codes are the gRPC ones in snake case, so the gateway's transcoder answers the
 * same body and status whichever side serves a route.
 */
export class LegacyError extends Error {
  override readonly name = "LegacyError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string) => new LegacyError(400, "invalid_argument", message);
export const notFound = (message: string) => new LegacyError(404, "not_found", message);
export const unauthenticated = (message: string) => new LegacyError(401, "unauthenticated", message);
export const denied = (message: string) => new LegacyError(403, "permission_denied", message);
export const exists = (message: string) => new LegacyError(409, "already_exists", message);
export const precondition = (message: string) => new LegacyError(400, "failed_precondition", message);
