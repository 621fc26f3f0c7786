import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type UnaryRequest,
} from "@connectrpc/connect";
import type { Logger } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import {
  BrokenCircuitError,
  BulkheadRejectedError,
  bulkhead,
  ExponentialBackoff,
  handleWhen,
  type IPolicy,
  retry,
  TaskCancelledError,
  wrap,
} from "cockatiel";
import { createBreaker, STATE_NAMES } from "./breaker.js";
import { callDeadline, deadlineSignal, writeTimeoutHeader } from "./deadline.js";

export interface UpstreamPolicyOptions {
  /** The upstream's name (`payments`): in metrics, logs and error messages. */
  upstream: string;
  /** Deadline of a call that sets none (and is not made while serving one with a deadline). */
  defaultTimeoutMs: number;
  retry: {
    /** Attempts in all, the first included. */
    maxAttempts: number;
    initialDelayMs: number;
    maxDelayMs: number;
  };
  breaker: {
    /** Consecutive failures (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN) that open it. */
    consecutiveFailures: number;
    /** How long it stays open before one probe call may go through. */
    halfOpenAfterMs: number;
  };
  bulkhead: {
    /** Calls in flight to the upstream at once... */
    limit: number;
    /** ...and waiting for a slot; beyond that, RESOURCE_EXHAUSTED at once. */
    queue: number;
  };
  logger: Logger;
  meter: Meter;
}

/** What the caller can see of a policy set (tests, admin pages). */
export interface UpstreamPolicy {
  readonly interceptor: Interceptor;
  /** `closed`, `open` or `half-open`. */
  readonly breakerState: "closed" | "open" | "half-open";
}

const RETRYABLE = new Set([Code.Unavailable, Code.ResourceExhausted]);

function isIdempotent(req: UnaryRequest | StreamRequest): boolean {
  return req.method.idempotency !== MethodOptions_IdempotencyLevel.IDEMPOTENCY_UNKNOWN;
}

/** `retry-after` of a RESOURCE_EXHAUSTED answer, in ms. */
function retryAfterMs(err: ConnectError): number | undefined {
  const v = err.metadata.get("retry-after");
  if (v === null || !/^\d+$/.test(v)) return undefined;
  return Number(v) * 1000;
}

/**
 * One upstream's policy set, as a Connect client interceptor: every call gets the smaller of its
 * own timeout and what is left of the incoming call's deadline (sent upstream as its timeout
 * header), waits for a bulkhead slot, passes the circuit breaker (open: UNAVAILABLE at once, no
 * network call; half-open after a cool-down: one probe) and, for methods the proto marks
 * idempotent, is retried on UNAVAILABLE or RESOURCE_EXHAUSTED (after its `retry-after`) with
 * exponential backoff and jitter, within its deadline. Breaker state changes are logged and
 * exported (`resilience.breaker.state`), with retry and rejection counts. Streaming calls get the
 * deadline and the breaker, never a retry.
 */
export function createUpstreamPolicy(options: UpstreamPolicyOptions): UpstreamPolicy {
  const { upstream, meter } = options;
  const attrs = { upstream };
  const retries = meter.createCounter("resilience.retries", { description: "Calls retried, by upstream" });
  const rejections = meter.createCounter("resilience.rejections", {
    description: "Calls refused without a network call (breaker open, bulkhead full), by upstream and reason",
  });
  const breaker = createBreaker(upstream, options.breaker, options.logger, meter);
  const slots = bulkhead(options.bulkhead.limit, options.bulkhead.queue);
  const retrying = retry(
    handleWhen((err) => err instanceof ConnectError && RETRYABLE.has(err.code)),
    {
      maxAttempts: Math.max(0, options.retry.maxAttempts - 1),
      backoff: new ExponentialBackoff({
        initialDelay: options.retry.initialDelayMs,
        maxDelay: options.retry.maxDelayMs,
      }),
    },
  );
  retrying.onRetry(() => retries.add(1, attrs));
  const policies: Policies = { idempotent: wrap(slots, retrying, breaker), onceOnly: wrap(slots, breaker) };
  const toConnectError = (err: unknown, deadlineMs: number): ConnectError => {
    if (err instanceof BrokenCircuitError) rejections.add(1, { ...attrs, reason: "breaker_open" });
    if (err instanceof BulkheadRejectedError) rejections.add(1, { ...attrs, reason: "bulkhead_full" });
    return policyErrorToConnect(err, upstream, deadlineMs);
  };
  return {
    interceptor: policyInterceptor(options, policies, toConnectError),
    get breakerState() {
      return STATE_NAMES[breaker.state];
    },
  };
}

interface Policies {
  /** Bulkhead, retry and breaker: for unary calls of methods the proto marks idempotent. */
  idempotent: IPolicy;
  /** Bulkhead and breaker: streams and methods that must not run twice. */
  onceOnly: IPolicy;
}

/** What a call refused or ended by a policy answers (a ConnectError passes through unchanged). */
function policyErrorToConnect(err: unknown, upstream: string, deadlineMs: number): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof BrokenCircuitError) {
    return new ConnectError(`circuit breaker open for ${upstream}`, Code.Unavailable);
  }
  if (err instanceof BulkheadRejectedError) {
    return new ConnectError(`too many calls in flight to ${upstream}`, Code.ResourceExhausted);
  }
  if (err instanceof TaskCancelledError) {
    return new ConnectError(
      `deadline of ${deadlineMs} ms exceeded calling ${upstream}`,
      Code.DeadlineExceeded,
    );
  }
  return ConnectError.from(err);
}

/** The interceptor: the call's deadline, then the call through its policy, attempt by attempt. */
function policyInterceptor(
  options: UpstreamPolicyOptions,
  policies: Policies,
  toConnectError: (err: unknown, deadlineMs: number) => ConnectError,
): Interceptor {
  return (next) => async (req) => {
    const deadline = callDeadline(req, options.defaultTimeoutMs);
    const started = Date.now();
    const policy = req.stream || !isIdempotent(req) ? policies.onceOnly : policies.idempotent;
    // The transport already enforces the call's own timeout (its signal is `req.signal`); a
    // signal of our own is needed only when the deadline is shorter or there is none.
    const own = deadline.shortened || deadline.own === undefined;
    const timed = own ? deadlineSignal(req.signal, deadline.ms, options.upstream) : undefined;
    const signal = timed?.signal ?? req.signal;
    // The header already says the call's own timeout on its first attempt; it is rewritten when
    // the deadline is another one, and on a retry (with what is left).
    let attempts = 0;
    try {
      return await policy.execute(async () => {
        if (attempts++ > 0 || own) writeTimeoutHeader(req, deadline, started);
        try {
          return await next(timed ? { ...req, signal } : req);
        } catch (err) {
          const e = ConnectError.from(err);
          // A RESOURCE_EXHAUSTED with retry-after: wait that long (within the deadline) first.
          const wait = e.code === Code.ResourceExhausted ? retryAfterMs(e) : undefined;
          if (wait !== undefined && Date.now() - started + wait < deadline.ms) {
            await new Promise((r) => setTimeout(r, wait));
          }
          throw e;
        }
      }, signal);
    } catch (err) {
      throw toConnectError(
        signal.aborted && signal.reason instanceof ConnectError ? signal.reason : err,
        deadline.ms,
      );
    } finally {
      timed?.release();
    }
  };
}
