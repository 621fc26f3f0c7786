/**
 * The proxy: one call through the gateway, step by step, and the file for each step.
 *
 * 1. `downstream-h2.ts`, `downstream-h1.ts`: the client's side of the call (an HTTP/2 stream or
 *    an HTTP/1.1 request) behind one interface, `downstream.ts`.
 * 2. `call.ts` (`ProxiedCall`): the call from its headers to its last byte; `complete()` is the
 *    one place it finishes (counted, timed, traced, logged).
 * 3. `admission.ts`: CORS preflight, route, deadline, method policy, then (after the
 *    authenticator) the rate limit; each refusal a code and a message. Before them all, the
 *    client's calls in flight (`client-calls.ts`).
 * 4. `headers.ts`: what goes upstream (no hop-by-hop or spoofed identity headers, the verified
 *    identity, what is left of the deadline) and what comes back to the client.
 * 5. `attempt.ts` (`UpstreamAttempt`): one try on one endpoint, in one state at a time:
 *    waiting, held, streaming, finished.
 * 6. `answer.ts`: an answer held back for a retry, whether it came whole, its outcome.
 * 7. `retry.ts`: whether a failed attempt goes again (idempotent, body kept, attempts and budget
 *    left) and after what backoff.
 * 8. `tracing.ts`: the call's SERVER span, named after its method, and a CLIENT span per attempt
 *    (only when the call's span records), whose context goes upstream; each attempt is also
 *    counted and timed (`rpc.client.requests`, `rpc.client.duration`), with the helpers and
 *    instruments of `@meshwork/telemetry`'s client interceptor.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { clientMetricsOf } from "@meshwork/telemetry";
import { AccessLog } from "./access-log.js";
import { installLeanAsyncBind } from "./async-bind.js";
import { ProxiedCall } from "./call.js";
import { ClientCalls } from "./client-calls.js";
import { Deadlines } from "./deadlines.js";
import type { Downstream } from "./downstream.js";
import { H1Downstream } from "./downstream-h1.js";
import { H2Downstream } from "./downstream-h2.js";
import type { ProxyOptions, ProxyShared } from "./options.js";
import { RetryBudget } from "./retry.js";
import { ProxySpans } from "./tracing.js";

export type { ProxyOptions } from "./options.js";
export type { RetryPolicy } from "./retry.js";

/** The gateway's request handling, for each call from the listener. */
export interface GatewayProxy {
  /** An HTTP/2 stream from the listener. */
  stream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void;
  /** An HTTP/1.1 request from the listener (Connect unary, gRPC-Web, plain fetch). */
  request(req: http.IncomingMessage, res: http.ServerResponse): void;
  /** A call the gateway makes itself (a transcoded REST call), on a downstream of its own. */
  dispatch(down: Downstream): void;
}

/** The gateway's request handling: route, pick an endpoint, forward frames both ways. */
export function createProxy(options: ProxyOptions): GatewayProxy {
  // Each call's upstream stream binds an AsyncResource: without its deprecate() wrappers.
  installLeanAsyncBind();
  const durations = new Map<string, (seconds: number) => void>();
  const shared: ProxyShared = {
    options,
    budget: new RetryBudget(options.retry),
    held: { bytes: 0 },
    spans: new ProxySpans(options.tracer, options.clientMetrics && clientMetricsOf(options.clientMetrics)),
    clientCalls: new ClientCalls(
      options.maxCallsPerClient,
      options.maxBufferedBytesPerClient,
      options.maxBufferedBytesTotal,
    ),
    deadlines: new Deadlines(),
    accessLog: new AccessLog(options.logger),
    recordDuration(route, seconds) {
      let record = durations.get(route);
      if (!record) {
        record = options.duration.bind({ route });
        durations.set(route, record);
      }
      record(seconds);
    },
  };

  return {
    stream(stream, headers) {
      new ProxiedCall(shared, new H2Downstream(stream, headers)).start();
    },
    request(req, res) {
      new ProxiedCall(shared, new H1Downstream(req, res)).start();
    },
    dispatch(down) {
      new ProxiedCall(shared, down).start();
    },
  };
}
