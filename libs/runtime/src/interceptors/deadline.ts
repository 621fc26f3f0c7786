import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamResponse,
  type UnaryResponse,
} from "@connectrpc/connect";
import { callEarlyEnd } from "../call-end.js";

/**
 * Enforces the caller's deadline (`grpc-timeout`, `connect-timeout-ms`) on the server: when it
 * passes, the call answers DEADLINE_EXCEEDED at once, whether or not the handler watches
 * `ctx.signal`. Clients that do not enforce deadlines themselves (plain `fetch`, curl) get the
 * same answer as gRPC clients, and no work is answered after its budget ran out.
 */
export function createDeadlineInterceptor(): Interceptor {
  return (next) => (req) => {
    // Without a deadline the signal ends only with the call (or the client's reset, after which
    // no answer reaches anyone): nothing to enforce, and touching the signal is not free.
    if (!req.header.has("grpc-timeout") && !req.header.has("connect-timeout-ms")) return next(req);
    // A transport that tells of an early end without an AbortSignal (the gRPC fast path) is
    // cheaper by far to follow.
    const early = callEarlyEnd(req);
    if (early) return Promise.race([next(req), early.then(undefined, rethrowAsConnectError)]);
    return enforce(next, req);
  };
}

function rethrowAsConnectError(reason: unknown): never {
  throw toError(reason);
}

async function enforce<R>(
  next: (req: R) => Promise<UnaryResponse | StreamResponse>,
  req: R & { signal: AbortSignal },
) {
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
}

function toError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was cancelled or its deadline passed", Code.DeadlineExceeded);
}
