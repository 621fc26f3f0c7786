import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { remainingIncomingMs, requestTimeout } from "@meshwork/telemetry";

/** The deadline one outgoing call gets, and how it must be told upstream. */
export interface CallDeadline {
  /** The smaller of the call's own timeout and what is left of the incoming call's deadline. */
  ms: number;
  /** The call's own timeout (from the header its transport set), if it has one. */
  own: number | undefined;
  /** Whether the incoming call's deadline is the shorter one. */
  shortened: boolean;
  /** The transport's protocol speaks `grpc-timeout` (gRPC, gRPC-Web), else `connect-timeout-ms`. */
  grpc: boolean;
}

/** Works out an outgoing call's deadline from its timeout header and the incoming call's. */
export function callDeadline(req: UnaryRequest | StreamRequest, defaultTimeoutMs: number): CallDeadline {
  const grpcTimeout = req.header.get("grpc-timeout");
  const connectTimeout = grpcTimeout === null ? req.header.get("connect-timeout-ms") : null;
  const own = requestTimeout(grpcTimeout, connectTimeout).ms;
  const incoming = remainingIncomingMs();
  const shortened = incoming !== undefined && (own === undefined || incoming < own);
  const ms = Math.max(1, Math.floor(shortened ? (incoming as number) : (own ?? defaultTimeoutMs)));
  const grpc =
    grpcTimeout !== null ||
    (connectTimeout === null && (req.header.get("content-type") ?? "").startsWith("application/grpc"));
  return { ms, own, shortened, grpc };
}

/** Writes what is left of the deadline into the request's timeout header (before an attempt). */
export function writeTimeoutHeader(
  req: UnaryRequest | StreamRequest,
  deadline: CallDeadline,
  startedAt: number,
) {
  const left = Math.max(1, deadline.ms - (Date.now() - startedAt));
  if (deadline.grpc) req.header.set("grpc-timeout", `${left}m`);
  else req.header.set("connect-timeout-ms", String(left));
}

/**
 * A signal that aborts when the caller's does or when `deadlineMs` passes (with DEADLINE_EXCEEDED
 * naming the upstream). `release()` clears the timer and the listener once the call is over.
 */
export function deadlineSignal(
  callerSignal: AbortSignal,
  deadlineMs: number,
  upstream: string,
): { signal: AbortSignal; release(): void } {
  const ac = new AbortController();
  const onCallerAbort = () => ac.abort(callerSignal.reason);
  if (callerSignal.aborted) onCallerAbort();
  else callerSignal.addEventListener("abort", onCallerAbort, { once: true });
  const timer = setTimeout(
    () =>
      ac.abort(
        new ConnectError(`deadline of ${deadlineMs} ms exceeded calling ${upstream}`, Code.DeadlineExceeded),
      ),
    deadlineMs,
  );
  return {
    signal: ac.signal,
    release() {
      clearTimeout(timer);
      callerSignal.removeEventListener("abort", onCallerAbort);
    },
  };
}
