import type { PGlite, Transaction as PGliteTransaction } from "@electric-sql/pglite";
import { processTracer, recordsSpans, scrubText } from "@meshwork/telemetry";
import {
  type Attributes,
  type Context,
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type postgres from "postgres";

/** What every statement span of one database says besides its statement. */
interface Target {
  /** Read per statement: the process's tracer may start after the database was opened. */
  tracer: () => Tracer;
  /** `db.namespace`, `server.address`, `server.port`: the same for every statement. */
  attrs: Attributes;
}

/** The parts of a statement's span that depend only on its text, parsed once per text. */
interface Statement {
  name: string;
  attrs: Attributes;
}

const IDENT = String.raw`("(?:[^"]|"")+"(?:\s*\.\s*"(?:[^"]|"")+")?|[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?)`;
const COLLECTION: Record<string, RegExp> = {
  SELECT: new RegExp(String.raw`\bfrom\s+${IDENT}`, "i"),
  INSERT: new RegExp(String.raw`^\s*insert\s+into\s+${IDENT}`, "i"),
  UPDATE: new RegExp(String.raw`^\s*update\s+(?:only\s+)?${IDENT}`, "i"),
  DELETE: new RegExp(String.raw`^\s*delete\s+from\s+(?:only\s+)?${IDENT}`, "i"),
};

function unquote(name: string): string {
  return name
    .split(/"\s*\.\s*"/)
    .map((part) => part.replace(/^"|"$/g, "").replace(/""/g, '"'))
    .join(".");
}

/**
 * The operation (first keyword) and the table a statement names first, for `db.operation.name`
 * and `db.collection.name`, from the statement text alone: Drizzle sends values as parameters,
 * so the text holds none, and it is what the span carries as `db.query.text`.
 */
export function describeStatement(text: string): { operation?: string; collection?: string } {
  const operation = /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase();
  const pattern = operation === undefined ? undefined : COLLECTION[operation];
  const match = pattern?.exec(text)?.[1];
  return { operation, collection: match === undefined ? undefined : unquote(match) };
}

const statements = new Map<string, Statement>();

function statementOf(text: string): Statement {
  let s = statements.get(text);
  if (!s) {
    const { operation, collection } = describeStatement(text);
    const attrs: Attributes = { "db.query.text": text };
    if (operation) attrs["db.operation.name"] = operation;
    if (collection) attrs["db.collection.name"] = collection;
    s = { name: [operation, collection].filter(Boolean).join(" ") || "postgresql", attrs };
    // Drizzle's statements are a fixed set per service; raw SQL could be endless: bounded.
    if (statements.size >= 2048) statements.clear();
    statements.set(text, s);
  }
  return s;
}

/** A statement's span, or undefined when the tracer records nothing (then nothing is made). */
function startStatement(target: Target, text: string, ctx: Context): Span | undefined {
  const tracer = target.tracer();
  if (!recordsSpans(tracer)) return undefined;
  const s = statementOf(text);
  return tracer.startSpan(
    s.name,
    {
      kind: SpanKind.CLIENT,
      attributes: { "db.system": "postgresql", "db.system.name": "postgresql", ...target.attrs, ...s.attrs },
    },
    ctx,
  );
}

function end(span: Span, err?: unknown): void {
  if (err !== undefined && span.isRecording()) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string") span.setAttribute("db.response.status_code", code);
    span.setAttribute("error.type", typeof code === "string" ? code : ((err as Error).name ?? "Error"));
    // Scrubbed: Postgres quotes a failing value in some messages (`invalid input syntax ...`).
    span.setStatus({ code: SpanStatusCode.ERROR, message: scrubText(String((err as Error).message)) });
  }
  span.end();
}

/** Runs `fn` in a span of its own (a transaction or savepoint) and ends it when `fn` settles. */
function inTransactionSpan<T>(target: Target, name: string, fn: (ctx: Context) => Promise<T>): Promise<T> {
  const tracer = target.tracer();
  const parent = context.active();
  if (!recordsSpans(tracer)) return fn(parent);
  const span = tracer.startSpan(
    name,
    {
      kind: SpanKind.INTERNAL,
      attributes: { "db.system": "postgresql", "db.system.name": "postgresql", ...target.attrs },
    },
    parent,
  );
  const ctx = trace.setSpan(parent, span);
  return context
    .with(ctx, () => fn(ctx))
    .then(
      (v) => {
        end(span);
        return v;
      },
      (err: unknown) => {
        end(span, err);
        throw err;
      },
    );
}

function targetOf(tracer: Tracer | undefined, attrs: Attributes): Target {
  return { tracer: tracer ? () => tracer : processTracer, attrs };
}

/**
 * A postgres.js client (or a transaction's scoped client) as Drizzle should see it: each
 * `unsafe()` query (every statement Drizzle runs goes through it) as a named prepared statement
 * or, with `prepare` off, as an unnamed one (whatever Drizzle asked for), and a CLIENT span per statement; `begin` and `savepoint` make a `transaction` /
 * `savepoint` span whose context their statements run in, so they are its children.
 *
 * The span ends when the query settles; it listens on the query's promise without calling its
 * own `then`, which would start it before Drizzle had set its result mode.
 */
export function instrumentPostgres<T extends postgres.Sql | postgres.TransactionSql>(
  sql: T,
  options: { prepare: boolean; tracer?: Tracer; attrs: Attributes },
): T {
  const target = targetOf(options.tracer, options.attrs);
  type Run = (...args: unknown[]) => unknown;
  const wrap = <S extends postgres.Sql | postgres.TransactionSql>(inner: S): S =>
    new Proxy(inner, {
      get(t, prop, receiver) {
        if (prop === "unsafe") {
          return (query: string, params?: unknown[], opts?: postgres.UnsafeQueryOptions) => {
            // Off means off, for a query `.prepare(name)`d too (Drizzle asks for a named one then).
            const q = t.unsafe(query, params as never, { ...opts, prepare: options.prepare });
            const span = startStatement(target, query, context.active());
            if (span) {
              Promise.prototype.then.call(
                q,
                () => end(span),
                (err: unknown) => end(span, err),
              );
            }
            return q;
          };
        }
        if (prop === "begin" || prop === "savepoint") {
          const original = Reflect.get(t, prop, receiver) as Run;
          return (...args: unknown[]) => {
            const fn = args.pop() as (tx: postgres.TransactionSql) => unknown;
            return inTransactionSpan(
              target,
              prop === "begin" ? "transaction" : "savepoint",
              (ctx) =>
                // postgres.js calls `fn` from its connection's callbacks: back into the span's context.
                original.call(t, ...args, (tx: postgres.TransactionSql) =>
                  context.with(ctx, () => fn(wrap(tx))),
                ) as Promise<unknown>,
            );
          };
        }
        return Reflect.get(t, prop, receiver);
      },
    });
  return wrap(sql);
}

/**
 * Makes every statement a PGlite instance runs for Drizzle (`query`, `exec`) a CLIENT span,
 * and every `transaction` a span whose statements are its children. Patches the instance (which
 * the caller owns) and each transaction object it hands out.
 */
export function instrumentPglite(client: PGlite, options: { tracer?: Tracer; attrs: Attributes }): PGlite {
  const target = targetOf(options.tracer, options.attrs);
  patchStatements(client, target);
  const transaction = client.transaction.bind(client);
  client.transaction = <T>(fn: (tx: PGliteTransaction) => Promise<T>) =>
    inTransactionSpan(target, "transaction", (ctx) =>
      transaction((tx) => {
        patchStatements(tx, target);
        return context.with(ctx, () => fn(tx));
      }),
    );
  return client;
}

function patchStatements(on: Pick<PGlite, "query" | "exec">, target: Target): void {
  const query = on.query.bind(on);
  const exec = on.exec.bind(on);
  on.query = ((text: string, ...rest: unknown[]) =>
    traced(target, text, () =>
      (query as (...a: unknown[]) => Promise<unknown>)(text, ...rest),
    )) as typeof on.query;
  on.exec = ((text: string, ...rest: unknown[]) =>
    traced(target, text, () =>
      (exec as (...a: unknown[]) => Promise<unknown>)(text, ...rest),
    )) as typeof on.exec;
}

function traced<T>(target: Target, text: string, run: () => Promise<T>): Promise<T> {
  const span = startStatement(target, text, context.active());
  if (!span) return run();
  return run().then(
    (v) => {
      end(span);
      return v;
    },
    (err: unknown) => {
      end(span, err);
      throw err;
    },
  );
}
