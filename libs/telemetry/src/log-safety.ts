/**
 * What a log line may say about an error or a value: never statement parameters, passwords,
 * password hashes, tokens or keys. Drizzle puts every parameter of a failed statement into the
 * error's message and stack (`Failed query: ...\nparams: ...`) and into `params`; Postgres puts the
 * whole failing row into `detail`; a stringified error (`String(err)`) carries the same text.
 * So errors are logged from an allowlist of fields, and text is cut before any `params:` tail.
 */

/** Error fields a log line keeps: names and codes, never values (`detail`, `params`, `parameters`). */
const ERROR_FIELDS = [
  "code",
  "severity",
  "constraint_name",
  "table_name",
  "column_name",
  "schema_name",
  "routine",
  "errno",
  "syscall",
] as const;

const REDACTED = "[redacted]";

/** Text patterns that are secrets wherever they appear. */
const SECRET_PATTERNS: readonly RegExp[] = [
  // argon2 / bcrypt / scrypt-style password hashes
  /\$argon2(?:id|i|d)\$[^\s'"\]}]*/g,
  /\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}/g,
  // the legacy monolith's scrypt hashes (`scrypt$<salt>$<key>`), synced to users (strangler fig)
  /\bscrypt\$[^\s'"\]}]*/g,
  // JWTs (three base64url parts, the first a JSON header)
  /eyJ[\w-]*\.[\w-]+\.[\w-]*/g,
  // Authorization header values
  /\b(Bearer|Basic)\s+[\w\-.~+/=]+/gi,
];

/** Postgres messages that quote the offending parameter value. */
const QUOTED_VALUES: readonly RegExp[] = [
  /(invalid input syntax for (?:type )?[\w ]+: )"(?:[^"]|"")*"/g,
  /(invalid input value for enum [\w.]+: )"(?:[^"]|"")*"/g,
  /(value )"(?:[^"]|"")*"( is out of range)/g,
  /(invalid byte sequence for encoding "[\w-]+": )[^\n]*/g,
];

/**
 * Cuts a Drizzle `params:` tail (up to the stack frames, if any) and replaces hashes, JWTs and
 * bearer credentials with `[redacted]`.
 */
export function scrubText(text: string): string {
  let out = text.replace(/\n?params: [\s\S]*?(?=\n\s+at |$)/g, "\nparams: [redacted]");
  for (const pattern of QUOTED_VALUES) {
    // With one group the third argument is the offset (a number), not a second group.
    out = out.replace(pattern, (_m, before: string, after: unknown) =>
      typeof after === "string" ? `${before}${REDACTED}${after}` : `${before}${REDACTED}`,
    );
  }
  for (const pattern of SECRET_PATTERNS) {
    out = out.replace(pattern, (m) =>
      /^(bearer|basic)\s/i.test(m) ? `${m.split(/\s+/)[0]} ${REDACTED}` : REDACTED,
    );
  }
  return out;
}

/** A plain, loggable picture of an error: type, scrubbed message and stack, codes, its causes. */
export interface LoggedError {
  type: string;
  message: string;
  stack?: string;
  cause?: LoggedError | string;
  [field: string]: unknown;
}

/** Pictures already made, so a logger's serializer passes them through unchanged. */
const produced = new WeakSet<object>();

/**
 * Turns whatever was passed as `err` into something safe to log. Errors keep their type, message
 * and stack (scrubbed), their codes and constraint names, and their cause chain (to a depth of 5);
 * every other field is dropped. Strings are scrubbed; anything else is described by its type only.
 */
export function errorForLog(err: unknown, depth = 0): LoggedError | string {
  if (typeof err === "string") return scrubText(err);
  if (typeof err === "object" && err !== null && produced.has(err)) return err as LoggedError;
  if (!(err instanceof Error)) {
    if (err && typeof err === "object" && "message" in err)
      return errorForLog(Object.assign(new Error(), err));
    return `non-error value (${err === null ? "null" : typeof err})`;
  }
  const out: LoggedError = { type: err.constructor?.name || err.name, message: scrubText(err.message) };
  if (err.stack) out.stack = scrubText(err.stack);
  const fields = err as unknown as Record<string, unknown>;
  for (const f of ERROR_FIELDS) {
    const v = fields[f];
    if (typeof v === "string" || typeof v === "number") out[f] = v;
  }
  if (err.cause !== undefined && depth < 5) out.cause = errorForLog(err.cause, depth + 1);
  if (err instanceof AggregateError)
    out.errors = err.errors.slice(0, 5).map((e) => errorForLog(e, depth + 1));
  return out;
}

/** An error as a span may record it (OpenTelemetry's `Exception`): scrubbed like a log line. */
export interface SpanException {
  name: string;
  message: string;
  stack?: string;
  code?: string | number;
}

/**
 * What `span.recordException` and `span.setStatus` may be given for `err`: its name and code,
 * its message and stack scrubbed ({@link scrubText}), so an exported span never carries a
 * statement's parameters or a secret (a span's exception event and status message leave the
 * process over OTLP, like a log line). Anything that is not an error is described by its type.
 */
export function exceptionForSpan(err: unknown): SpanException {
  const safe = errorForLog(err);
  if (typeof safe === "string") return { name: "Error", message: safe };
  const out: SpanException = { name: safe.type, message: safe.message };
  if (safe.stack) out.stack = safe.stack;
  if (typeof safe.code === "string" || typeof safe.code === "number") out.code = safe.code;
  return out;
}

/**
 * pino `redact` paths: the second guard, for a secret logged under its own name by mistake
 * (`logger.info({ password })`, a request's headers). Covers the top level and one level down.
 */
export const REDACT_PATHS: readonly string[] = [
  "password",
  "newPassword",
  "passwordHash",
  "password_hash",
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "secret",
  "bootstrapSecret",
  "privateKey",
  "privateJwk",
  "private_jwk",
  "params",
  "parameters",
  "authorization",
  "cookie",
].flatMap((k) => [k, `*.${k}`, `headers["${k}"]`, `*.headers["${k}"]`]);
