import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Enforces the caller's deadline (`grpc-timeout`, `connect-timeout-ms`) on the server: when it
 * passes, the call answers DEADLINE_EXCEEDED at once, whether or not the handler watches
 * `ctx.signal`. Clients that do not enforce deadlines themselves (plain `fetch`, curl) get the
 * same answer as gRPC clients, and no work is answered after its budget ran out.
 */
export function createDeadlineInterceptor(): Interceptor {
  return (next) => async (req) => {
    const signal = req.signal;
    if (signal.aborted) throw toError(signal.reason);
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(toError(signal.reason));
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([next(req), aborted]);
    } finally {
      if (onAbort) signal.removeEventListener("abort", onAbort);
    }
  };
}

function toError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was cancelled or its deadline passed", Code.DeadlineExceeded);
}
