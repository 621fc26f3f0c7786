import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { SignJWT } from "jose";
import type { Sql } from "postgres";
import { exists, notFound, unauthenticated } from "../errors.js";
import { type CallerOf, mayRead, uuidParam } from "../http.js";
import { hashPassword, verifyPassword } from "../passwords.js";
import { type UserRow, userJson } from "../shapes.js";

const TOKEN_LIFETIME_S = 3600;

const registerBody = {
  type: "object",
  required: ["email", "password", "display_name"],
  properties: {
    email: { type: "string", maxLength: 254, pattern: "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$" },
    password: { type: "string", minLength: 8, maxLength: 128 },
    display_name: { type: "string", minLength: 1, maxLength: 100 },
  },
} as const;

const loginBody = {
  type: "object",
  required: ["email", "password"],
  properties: { email: { type: "string", maxLength: 254 }, password: { type: "string", maxLength: 128 } },
} as const;

/** `POST /api/users`, `POST /api/login`, `GET /api/users/{id}`. */
export function registerUserRoutes(
  app: FastifyInstance,
  sql: Sql,
  secret: Uint8Array,
  caller: CallerOf,
): void {
  app.post("/api/users", { schema: { body: registerBody } }, async (req, reply) => {
    const body = req.body as { email: string; password: string; display_name: string };
    const email = body.email.trim().toLowerCase();
    const hash = await hashPassword(body.password);
    const rows = await sql<UserRow[]>`
      INSERT INTO users (id, email, display_name, password_hash)
      VALUES (${randomUUID()}, ${email}, ${body.display_name}, ${hash})
      ON CONFLICT (email) DO NOTHING
      RETURNING id, email, display_name, roles, created_at`;
    if (!rows[0]) throw exists(`a user with email ${email} already exists`);
    return reply.code(200).send(userJson(rows[0]));
  });

  app.post("/api/login", { schema: { body: loginBody } }, async (req) => {
    const body = req.body as { email: string; password: string };
    const [row] = await sql<(UserRow & { password_hash: string })[]>`
      SELECT id, email, display_name, roles, created_at, password_hash FROM users
      WHERE email = ${body.email.trim().toLowerCase()}`;
    if (!row || !(await verifyPassword(body.password, row.password_hash))) {
      throw unauthenticated("wrong email or password");
    }
    const exp = Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_S;
    const token = await new SignJWT({ roles: row.roles })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(row.id)
      .setIssuer("legacy")
      .setIssuedAt()
      .setExpirationTime(exp)
      .sign(secret);
    return {
      access_token: token,
      token_type: "Bearer",
      expire_time: new Date(exp * 1000).toISOString(),
      user: userJson(row),
    };
  });

  app.get<{ Params: { id: string } }>("/api/users/:id", async (req) => {
    const id = uuidParam(req.params.id);
    mayRead(await caller(req), id);
    const [row] = await sql<
      UserRow[]
    >`SELECT id, email, display_name, roles, created_at FROM users WHERE id = ${id}`;
    if (!row) throw notFound(`user ${id} not found`);
    return userJson(row);
  });
}
