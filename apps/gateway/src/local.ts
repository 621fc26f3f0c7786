import type http from "node:http";
import type http2 from "node:http2";
import type { DescFile } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HealthRegistry, registerHealthService, registerReflectionServices } from "@meshwork/runtime";
import type { GatewayConfig } from "./config.js";
import { type RateLimiter, rateRefusal } from "./ratelimit.js";

const reflectionPrefixes = [
  "/grpc.reflection.v1.ServerReflection/",
  "/grpc.reflection.v1alpha.ServerReflection/",
];
const healthPrefix = "/grpc.health.v1.Health/";

/** The calling client's address, for calls the gateway answers itself. */
const clientAddress = createContextKey("unknown", { description: "client address" });

/**
 * RESOURCE_EXHAUSTED (with `retry-after`) past a route's rate limit, by client address. Health
 * checks are not limited: a prober must not be told the gateway is down because it asks often.
 */
function rateLimited(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName === "grpc.health.v1.Health") return next(req);
    const limit = limiter.take(
      `/${req.service.typeName}/${req.method.name}`,
      `ip:${req.contextValues.get(clientAddress)}`,
    );
    if (!limit.allowed) {
      const refusal = rateRefusal(limit);
      throw new ConnectError(refusal.message, Code.ResourceExhausted, refusal.headers);
    }
    return next(req);
  };
}

/** The calls the gateway answers itself, and how to tell them. */
export interface LocalCalls {
  /** The gateway's own health (service ""). */
  readonly health: HealthRegistry;
  readonly servesReflection: boolean;
  /** Whether a request path is answered here (else it is proxied). */
  isLocal(path: string | undefined): boolean;
  handler(
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ): void;
}

/**
 * Calls the gateway answers itself, unless the route table routes them to a cluster:
 * - server reflection of every routed contract (no single service can describe them all),
 *   unless REFLECTION=false;
 * - grpc.health.v1.Health for the gateway itself (service ""): SERVING from start until
 *   stop, for load balancers and probes in front of it.
 * Needing no token, they keep the edge's other limits: request size (no compressed bombs
 * either), the longest deadline, and for reflection the rate limits by client address.
 */
export function createLocalCalls(
  config: GatewayConfig,
  files: readonly DescFile[],
  routed: ReadonlyMap<string, unknown>,
  limiter: RateLimiter,
): LocalCalls {
  const health = new HealthRegistry([]);
  const localPrefixes = [...((config.reflection ?? true) ? reflectionPrefixes : []), healthPrefix].filter(
    (p) => !routed.has(p),
  );
  const servesReflection = localPrefixes.some((p) => reflectionPrefixes.includes(p));
  const local =
    localPrefixes.length > 0
      ? connectNodeAdapter({
          routes(router) {
            if (localPrefixes.includes(healthPrefix)) registerHealthService(router, health);
            if (servesReflection) registerReflectionServices(router, files);
          },
          readMaxBytes: config.maxRequestBytes,
          acceptCompression: [],
          maxTimeoutMs: config.maxTimeoutMs,
          contextValues: (req) =>
            createContextValues().set(clientAddress, req.socket?.remoteAddress ?? "unknown"),
          interceptors: [rateLimited(limiter)],
        })
      : undefined;
  return {
    health,
    servesReflection,
    isLocal: (path) =>
      local !== undefined && path !== undefined && localPrefixes.some((prefix) => path.startsWith(prefix)),
    handler(req, res) {
      local?.(req, res);
    },
  };
}
