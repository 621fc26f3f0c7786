import type { AssertionSigner } from "@meshwork/runtime";
import type { BoundHistogram, ClientMetricsSource, Logger } from "@meshwork/telemetry";
import type { Tracer } from "@opentelemetry/api";
import type { Authenticator, Policy } from "../auth.js";
import type { RateLimiter } from "../ratelimit.js";
import type { Route } from "../routes.js";
import type { Upstreams } from "../upstreams.js";
import type { AccessLog } from "./access-log.js";
import type { HeldTotal } from "./answer.js";
import type { ClientCalls } from "./client-calls.js";
import type { Deadlines } from "./deadlines.js";
import type { RetryBudget, RetryPolicy } from "./retry.js";
import type { ProxySpans } from "./tracing.js";

export interface ProxyOptions {
  routes: ReadonlyMap<string, Route>;
  /** Access policy per method path; a path under a route but not here is an unknown method. */
  policies: ReadonlyMap<string, Policy>;
  auth: Authenticator;
  /** Signs the verified caller for the upstream service (the only way services learn who calls). */
  assert: AssertionSigner;
  limiter: RateLimiter;
  /** Largest request body forwarded; more answers RESOURCE_EXHAUSTED. */
  maxRequestBytes: number;
  /** Calls one client address may have in flight at once; more answer RESOURCE_EXHAUSTED. */
  maxCallsPerClient: number;
  /**
   * Bytes held for one client address at once: request bodies kept for a retry (past it the call
   * is RESOURCE_EXHAUSTED), answers held back for one (past it they are streamed as they come),
   * and answers written that the client has not taken (past it the call is reset).
   */
  maxBufferedBytesPerClient: number;
  /** The same bytes for all addresses together (past it as past one address's limit). */
  maxBufferedBytesTotal: number;
  retry: RetryPolicy;
  /** Origins browsers may call from (`*` for any); empty: no CORS headers at all. */
  corsOrigins: readonly string[];
  upstreams: Upstreams;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  logger: Logger;
  tracer: Tracer;
  /** Where each attempt upstream is counted and timed (`rpc.client.*`); none: not measured. */
  clientMetrics?: ClientMetricsSource;
  duration: BoundHistogram;
  /** Counts answers by route and code (or HTTP status), and by the upstream that gave them. */
  count(route: string, code: string, upstream?: string): void;
}

/** What every call of one proxy shares. */
export interface ProxyShared {
  readonly options: ProxyOptions;
  readonly budget: RetryBudget;
  readonly held: HeldTotal;
  /** The SERVER span of each call and the CLIENT span of each attempt upstream. */
  readonly spans: ProxySpans;
  readonly clientCalls: ClientCalls;
  /** The deadline of every call in flight, behind one timer. */
  readonly deadlines: Deadlines;
  /** The access lines, a line per call, into the proxy logger's destination. */
  readonly accessLog: AccessLog;
  /** Records a finished call's duration under its route. */
  recordDuration(route: string, seconds: number): void;
}
