import type { FastifyInstance, FastifyRequest } from "fastify";
import { jwtVerify } from "jose";
import { denied, invalid, LegacyError, unauthenticated } from "./errors.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The pattern of an id in the legacy API (also used in JSON schemas). */
export const UUID_PATTERN = UUID.source;

/** Who called: the subject and roles of a verified session token. */
export interface Caller {
  id: string;
  roles: string[];
}

/** Reads and verifies the caller's bearer token. */
export type CallerOf = (req: FastifyRequest) => Promise<Caller>;

export function uuidParam(value: string, name = "id"): string {
  if (!UUID.test(value)) throw invalid(`${name}: value must be a valid UUID`);
  return value.toLowerCase();
}

export function pageOf(query: Record<string, string | undefined>): { size: number; offset: number } {
  const rawSize = query.page_size ?? "0";
  if (!/^\d{1,9}$/.test(rawSize)) throw invalid("page_size: value must be a non-negative integer");
  const size = Math.min(Number(rawSize) || 20, 100);
  let offset = 0;
  if (query.page_token) {
    const m = /^o(\d{1,9})$/.exec(Buffer.from(query.page_token, "base64url").toString());
    if (!m) throw invalid("page_token: not a token this API issued");
    offset = Number(m[1]);
  }
  return { size, offset };
}

export const tokenOf = (offset: number) => Buffer.from(`o${offset}`).toString("base64url");

export function mayRead(c: Caller, ownerId: string): void {
  if (c.id !== ownerId && !c.roles.includes("admin")) throw denied("not your data");
}

export function createCallerOf(secret: Uint8Array): CallerOf {
  return async (req) => {
    const header = req.headers.authorization;
    if (!header?.startsWith("Bearer ")) throw unauthenticated("a bearer token is required");
    try {
      const { payload } = await jwtVerify(header.slice(7), secret, {
        issuer: "legacy",
        algorithms: ["HS256"],
      });
      return {
        id: String(payload.sub),
        roles: Array.isArray(payload.roles) ? payload.roles.map(String) : [],
      };
    } catch {
      throw unauthenticated("the token is invalid or expired");
    }
  };
}

/** Every failure as `{ error, message }` with a deliberate status; never a stack or SQL. */
export function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, _req, reply) => {
    if (err instanceof LegacyError) {
      return reply.code(err.status).send({ error: err.code, message: err.message });
    }
    if (err.validation) {
      return reply
        .code(400)
        .send({ error: "invalid_argument", message: err.message.replace(/^body\/?/, "") });
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      const code = err.statusCode === 413 ? "resource_exhausted" : "invalid_argument";
      return reply.code(err.statusCode).send({ error: code, message: err.message });
    }
    app.log.error({ err }, "request failed");
    return reply.code(500).send({ error: "internal", message: "internal error" });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: "not_found", message: `no route ${req.method} ${req.url.split("?")[0]}` }),
  );
}
