/** SQLSTATEs that say the server went away or will not take the session (not the query's fault). */
const SERVER_GONE = new Set([
  "57P01", // admin_shutdown: terminated by an administrator (pg_terminate_backend) or a fast shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now: "the database system is starting up / shutting down"
  "53300", // too_many_connections
]);

/** postgres.js's own codes for a lost or unobtainable connection, and the socket errors below them. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * Whether `err` (or an error in its `cause` chain, as Drizzle wraps driver errors) means the
 * database could not be reached or dropped the connection, rather than that the statement was
 * wrong: SQLSTATE class 08 (connection exception), 57P01/57P02/57P03 (the server is shutting down,
 * crashed or not yet accepting connections), 53300 (too many connections), a database closed to
 * new connections (`ALLOW_CONNECTIONS false`), postgres.js's `CONNECTION_*` / `CONNECT_TIMEOUT`,
 * socket errors (ECONNREFUSED, ECONNRESET, EPIPE, ...) and a closed PGlite.
 *
 * Such a failure is transient and the statement did not commit (unless the connection was lost
 * during COMMIT itself): services answer it with UNAVAILABLE so callers may retry what is safe to
 * retry. Constraint violations and other SQL errors are not connection errors.
 */
export function isConnectionError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 8; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === "string") {
      if (code.startsWith("08") && code.length === 5) return true;
      if (SERVER_GONE.has(code) || CONNECTION_CODES.has(code)) return true;
      // object_not_in_prerequisite_state, raised at connect time for a database closed to connections
      if (
        code === "55000" &&
        typeof message === "string" &&
        message.includes("not currently accepting connections")
      )
        return true;
    }
    if (message === "PGlite is closed") return true;
    // No pooled connection within the wait bound (PoolWaitTimeoutError, pool-metrics.ts).
    if ((e as { name?: unknown }).name === "PoolWaitTimeoutError") return true;
    // The server's own words while it stops, starts or recovers, in case no SQLSTATE came with them.
    if (
      typeof message === "string" &&
      /the database system is (shutting down|starting up|in recovery mode)/.test(message)
    )
      return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * What was wrong with a value PostgreSQL refused, when `err` (or an error in its `cause` chain)
 * is a data exception (SQLSTATE class 22: a number out of range, a NUL byte in text, text that is
 * not a valid uuid or timestamp, a string too long); undefined for anything else. The text is the
 * server's message, which describes the value and its type, never the statement or the other
 * parameters, prefixed with the column when the server names one. The client sent the value, so
 * services answer INVALID_ARGUMENT with it rather than INTERNAL.
 */
export function invalidValueOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 8; depth++) {
    const { code, message, column_name } = e as { code?: unknown; message?: unknown; column_name?: unknown };
    if (typeof code === "string" && code.length === 5 && code.startsWith("22")) {
      const what = typeof message === "string" && message ? message : `data exception ${code}`;
      const column = typeof column_name === "string" && column_name ? `${column_name}: ` : "";
      return `invalid value: ${column}${what}`;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * What a service built on `createService` (`@meshwork/runtime`) takes from its database, spread
 * into its options: the readiness check (a ping; while it fails the service reports NOT_SERVING)
 * `unavailableWhen: isConnectionError`, so a query that loses the database answers UNAVAILABLE, and
 * `invalidWhen: invalidValueOf`, so a value the database refuses answers INVALID_ARGUMENT.
 *
 * `createService({ ..., ...databaseServiceOptions(database) })`
 */
export function databaseServiceOptions(database: { ping(): Promise<void> }): {
  readiness: ReadonlyArray<{ name: string; check(): Promise<void> }>;
  unavailableWhen: (err: unknown) => boolean;
  invalidWhen: (err: unknown) => string | undefined;
} {
  return {
    readiness: [{ name: "database", check: () => database.ping() }],
    unavailableWhen: isConnectionError,
    invalidWhen: invalidValueOf,
  };
}
