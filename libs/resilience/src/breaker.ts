import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@meshwork/telemetry";
import type { Meter } from "@opentelemetry/api";
import { CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen } from "cockatiel";

/** The codes that count as an upstream's failure for its breaker. */
const BREAKER_FAILURES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown]);

export const STATE_NAMES = {
  [CircuitState.Closed]: "closed",
  [CircuitState.Open]: "open",
  [CircuitState.HalfOpen]: "half-open",
  [CircuitState.Isolated]: "open",
} as const;

/**
 * One upstream's circuit breaker: opened by `consecutiveFailures` failures in a row, half-open
 * after `halfOpenAfterMs`; each state change is logged (opening as a warning) and the state is
 * exported as `resilience.breaker.state` (0 closed, 1 open, 2 half-open).
 */
export function createBreaker(
  upstream: string,
  settings: { consecutiveFailures: number; halfOpenAfterMs: number },
  logger: Logger,
  meter: Meter,
) {
  const breaker = circuitBreaker(
    handleWhen((err) => err instanceof ConnectError && BREAKER_FAILURES.has(err.code)),
    {
      halfOpenAfter: settings.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(settings.consecutiveFailures),
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
      r.observe(breaker.state === CircuitState.HalfOpen ? 2 : breaker.state === CircuitState.Closed ? 0 : 1, {
        upstream,
      }),
    );
  return breaker;
}
