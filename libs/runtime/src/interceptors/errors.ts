import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { errorForLog, type Logger } from "@meshwork/telemetry";

/**
 * Turns any error that is not a deliberate `ConnectError` into INTERNAL with a fixed message, and
 * logs the original (with its stack) on the server. Stack traces, SQL and driver messages never
 * reach a client. Domain errors are mapped to `ConnectError` by each service's port; anything
 * that escapes that mapping is a bug and is reported as one, except what `unavailable` recognises
 * (a dependency that cannot be reached, such as a lost database connection): that is UNAVAILABLE,
 * again with a fixed message, so callers retry what is safe to retry; and what `invalid` recognises
 * (a value the database refused, such as a number out of range): that is INVALID_ARGUMENT with the
 * text `invalid` gives, which must name the problem without quoting the statement.
 *
 * The error is logged through `errorForLog`, whatever logger was given: a failed statement's
 * parameters (Drizzle puts them in the message), Postgres's `detail` (the failing row) and any
 * hash or token in the text never reach the log line.
 */
export function createErrorInterceptor(
  logger: Logger,
  unavailable: (err: unknown) => boolean = () => false,
  invalid: (err: unknown) => string | undefined = () => undefined,
): Interceptor {
  const hide = (err: unknown, procedure: string): ConnectError => {
    if (err instanceof ConnectError) return err;
    if (err instanceof Error && err.name === "AbortError") {
      return new ConnectError("operation was aborted", Code.Canceled);
    }
    if (unavailable(err)) {
      logger.warn({ err: errorForLog(err), procedure }, "dependency unavailable");
      return new ConnectError(
        "service temporarily unavailable: a dependency cannot be reached",
        Code.Unavailable,
      );
    }
    const problem = invalid(err);
    if (problem !== undefined) {
      logger.info({ procedure, problem }, "value refused by a dependency");
      return new ConnectError(problem, Code.InvalidArgument);
    }
    logger.error({ err: errorForLog(err), procedure }, "unhandled error");
    return new ConnectError("internal error", Code.Internal);
  };
  return (next) => (req) => {
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    let pending: ReturnType<typeof next>;
    try {
      pending = next(req);
    } catch (err) {
      return Promise.reject(hide(err, procedure));
    }
    return pending.then(
      (res) => {
        if (!res.stream) return res;
        const inner = res.message;
        return {
          ...res,
          message: (async function* () {
            try {
              yield* inner;
            } catch (err) {
              throw hide(err, procedure);
            }
          })(),
        };
      },
      (err) => {
        throw hide(err, procedure);
      },
    );
  };
}
