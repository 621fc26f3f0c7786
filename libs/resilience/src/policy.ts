import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type UnaryRequest,
} from "@connectrpc/connect";
import { type Logger, remainingIncomingMs, requestTimeout } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import {
  BrokenCircuitError,
  BulkheadRejectedError,
  bulkhead,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  retry,
  TaskCancelledError,
  wrap,
} from "cockatiel";

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
const BREAKER_FAILURES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown]);
const STATE_NAMES = {
  [CircuitState.Closed]: "closed",
  [CircuitState.Open]: "open",
  [CircuitState.HalfOpen]: "half-open",
  [CircuitState.Isolated]: "open",
} as const;

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
  const { upstream, logger, meter } = options;
  const attrs = { upstream };
  const retries = meter.createCounter("resilience.retries", { description: "Calls retried, by upstream" });
  const rejections = meter.createCounter("resilience.rejections", {
    description: "Calls refused without a network call (breaker open, bulkhead full), by upstream and reason",
  });

  const breaker = circuitBreaker(
    handleWhen((err) => err instanceof ConnectError && BREAKER_FAILURES.has(err.code)),
    {
      halfOpenAfter: options.breaker.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(options.breaker.consecutiveFailures),
    },
  );
  breaker.onStateChange((state) => {
    const name = STATE_NAMES[state];
    (state === CircuitState.Open ? logger.warn.bind(logger) : logger.info.bind(logger))(
      { upstream, state: name },
      "circuit breaker state changed",
    );
  });
  meter
    .createObservableGauge("resilience.breaker.state", {
      description: "Circuit breaker state by upstream: 0 closed, 1 open, 2 half-open",
    })
    .addCallback((r) =>
      r.observe(
        breaker.state === CircuitState.HalfOpen ? 2 : breaker.state === CircuitState.Closed ? 0 : 1,
        attrs,
      ),
    );

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
  const idempotentPolicy = wrap(slots, retrying, breaker);
  const onceOnly = wrap(slots, breaker);

  const toConnectError = (err: unknown, deadlineMs: number): ConnectError => {
    if (err instanceof ConnectError) return err;
    if (err instanceof BrokenCircuitError) {
      rejections.add(1, { ...attrs, reason: "breaker_open" });
      return new ConnectError(`circuit breaker open for ${upstream}`, Code.Unavailable);
    }
    if (err instanceof BulkheadRejectedError) {
      rejections.add(1, { ...attrs, reason: "bulkhead_full" });
      return new ConnectError(`too many calls in flight to ${upstream}`, Code.ResourceExhausted);
    }
    if (err instanceof TaskCancelledError) {
      return new ConnectError(
        `deadline of ${deadlineMs} ms exceeded calling ${upstream}`,
        Code.DeadlineExceeded,
      );
    }
    return ConnectError.from(err);
  };

  const interceptor: Interceptor = (next) => async (req) => {
    // The deadline: the smaller of the call's own and what is left of the incoming one.
    // The call's own timeout, from the header the transport set from its `timeoutMs`.
    const grpcTimeout = req.header.get("grpc-timeout");
    const connectTimeout = grpcTimeout === null ? req.header.get("connect-timeout-ms") : null;
    const own = requestTimeout(grpcTimeout, connectTimeout).ms;
    const incoming = remainingIncomingMs();
    const shortened = incoming !== undefined && (own === undefined || incoming < own);
    const deadlineMs = Math.max(
      1,
      Math.floor(shortened ? (incoming as number) : (own ?? options.defaultTimeoutMs)),
    );
    // The header of the transport's protocol: gRPC and gRPC-Web (`application/grpc...`) say
    // `grpc-timeout`, the Connect protocol `connect-timeout-ms`.
    const grpc =
      grpcTimeout !== null ||
      (connectTimeout === null && (req.header.get("content-type") ?? "").startsWith("application/grpc"));
    const started = Date.now();
    // The header already says the call's own timeout on its first attempt; it is rewritten when
    // the deadline is another one, and on a retry (with what is left).
    let attempts = 0;
    const setTimeoutHeader = (r: typeof req) => {
      if (attempts++ === 0 && !shortened && own !== undefined) return;
      const left = Math.max(1, deadlineMs - (Date.now() - started));
      if (grpc) r.header.set("grpc-timeout", `${left}m`);
      else r.header.set("connect-timeout-ms", String(left));
    };

    const policy = req.stream || !isIdempotent(req) ? onceOnly : idempotentPolicy;
    // The transport already enforces the call's own timeout (its signal is `req.signal`); a
    // controller of our own is needed only when the deadline is shorter or there is none.
    let ac: AbortController | undefined;
    let timer: NodeJS.Timeout | undefined;
    const onCallerAbort = () => ac?.abort(req.signal.reason);
    if (shortened || own === undefined) {
      ac = new AbortController();
      const controller = ac;
      if (req.signal.aborted) onCallerAbort();
      else req.signal.addEventListener("abort", onCallerAbort, { once: true });
      timer = setTimeout(
        () =>
          controller.abort(
            new ConnectError(
              `deadline of ${deadlineMs} ms exceeded calling ${upstream}`,
              Code.DeadlineExceeded,
            ),
          ),
        deadlineMs,
      );
    }
    const signal = ac?.signal ?? req.signal;
    try {
      return await policy.execute(async () => {
        setTimeoutHeader(req);
        try {
          return await next(ac ? { ...req, signal } : req);
        } catch (err) {
          const e = ConnectError.from(err);
          // A RESOURCE_EXHAUSTED with retry-after: wait that long (within the deadline) first.
          const wait = e.code === Code.ResourceExhausted ? retryAfterMs(e) : undefined;
          if (wait !== undefined && Date.now() - started + wait < deadlineMs) {
            await new Promise((r) => setTimeout(r, wait));
          }
          throw e;
        }
      }, signal);
    } catch (err) {
      throw toConnectError(
        signal.aborted && signal.reason instanceof ConnectError ? signal.reason : err,
        deadlineMs,
      );
    } finally {
      if (ac) {
        clearTimeout(timer);
        req.signal.removeEventListener("abort", onCallerAbort);
      }
    }
  };

  return {
    interceptor,
    get breakerState() {
      return STATE_NAMES[breaker.state];
    },
  };
}
