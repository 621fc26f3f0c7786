import { randomBytes } from "node:crypto";
import postgres from "postgres";

/** The database of one service on a shared Postgres server. */
export interface ServiceDatabase {
  database: string;
  role: string;
  /** The URL the service connects with: its own role, its own database. */
  url: string;
}

const IDENT = /^[a-z][a-z0-9_]*$/;

/**
 * Creates (idempotently) a database and a login role for `service` on the server at `adminUrl`,
 * and makes the role the only one besides superusers that can connect to it: CONNECT is revoked
 * from PUBLIC, so a service's role cannot reach another service's database. The role owns its
 * database, so it can run its own migrations. `password` is set on every run, so the URL always
 * works; pass a stable one to keep existing connections valid.
 */
export async function provisionServiceDatabase(
  adminUrl: string,
  service: string,
  options: { prefix?: string; password?: string } = {},
): Promise<ServiceDatabase> {
  const name = `${options.prefix ?? "meshwork"}_${service}`.toLowerCase().replaceAll("-", "_");
  if (!IDENT.test(name)) throw new Error(`cannot derive a safe identifier from service name "${service}"`);
  const password = options.password ?? randomBytes(18).toString("base64url");
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [role] = await sql`select 1 from pg_roles where rolname = ${name}`;
    const pw = password.replaceAll("'", "''");
    if (role) await sql.unsafe(`ALTER ROLE "${name}" WITH LOGIN PASSWORD '${pw}'`);
    else await sql.unsafe(`CREATE ROLE "${name}" WITH LOGIN PASSWORD '${pw}'`);
    const [db] = await sql`select 1 from pg_database where datname = ${name}`;
    if (!db) await sql.unsafe(`CREATE DATABASE "${name}" OWNER "${name}"`);
    await sql.unsafe(`REVOKE ALL ON DATABASE "${name}" FROM PUBLIC`);
    await sql.unsafe(`GRANT CONNECT, TEMPORARY ON DATABASE "${name}" TO "${name}"`);
  } finally {
    await sql.end();
  }
  const url = new URL(adminUrl);
  url.username = name;
  url.password = password;
  url.pathname = `/${name}`;
  return { database: name, role: name, url: url.toString() };
}

/** Drops what {@link provisionServiceDatabase} created (used by tests and `meshctl down --purge`). */
export async function dropServiceDatabase(adminUrl: string, name: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await sql.unsafe(`DROP ROLE IF EXISTS "${name}"`);
  } finally {
    await sql.end();
  }
}
