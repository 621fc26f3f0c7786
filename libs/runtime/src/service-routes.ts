// What a service answers on its one port: the interceptor chain, the Connect routes (health,
// reflection, the service's own, with decode guards), the plain HTTP routes, and the request
// handler that picks between them. Each is built once, when the service is created.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { errorForLog, type Logger, type Telemetry } from "@meshwork/telemetry";
import { sliceLargeWrites } from "./answer-slices.js";
import { createDecodeErrorInterceptor, defaultCompression, guardDecoding } from "./decode-errors.js";
import type { GrpcUnaryFastPath } from "./grpc-unary.js";
import { type HealthRegistry, registerHealthService, ServingStatus } from "./health.js";
import type { ServiceIdentity } from "./identity/index.js";
import { createDeadlineInterceptor } from "./interceptors/deadline.js";
import { createErrorInterceptor } from "./interceptors/errors.js";
import { createNulStringInterceptor } from "./interceptors/nul-strings.js";
import { admittedKey, createReadinessInterceptor } from "./interceptors/readiness.js";
import { createTelemetryInterceptor } from "./interceptors/telemetry.js";
import { createValidationInterceptor } from "./interceptors/validation.js";
import type { NodeRequestHandler } from "./listener.js";
import { registerReflectionServices } from "./reflection.js";
import type { HttpRoute, ServiceOptions } from "./service.js";

/** connect-node's handler of RPCs (its own type is not exported). */
type RpcHandler = ReturnType<typeof connectNodeAdapter>;

/** The chain every RPC runs through, in order, the service's own interceptors last. */
export function serviceInterceptors(
  options: ServiceOptions,
  telemetry: Telemetry,
  logger: Logger,
  identity: ServiceIdentity,
): Interceptor[] {
  return [
    createTelemetryInterceptor({ telemetry, logger }),
    createErrorInterceptor(logger, options.unavailableWhen, options.invalidWhen),
    createDecodeErrorInterceptor(),
    createDeadlineInterceptor(),
    createReadinessInterceptor(),
    // Who calls is settled before validation and before any handler runs.
    identity.interceptor,
    createNulStringInterceptor(),
    createValidationInterceptor(),
    ...(options.interceptors ?? []),
  ];
}

/**
 * The Connect handler of every RPC: health, reflection and the service's routes, each guarded so
 * an undecodable body answers INVALID_ARGUMENT. With a fast path, its routes are recorded too.
 * `admitted` says whether each request arrived while SERVING.
 */
export function createRpcAdapter(
  options: ServiceOptions,
  interceptors: Interceptor[],
  fast: GrpcUnaryFastPath | undefined,
  health: HealthRegistry,
  admitted: WeakMap<object, boolean>,
): RpcHandler {
  const { readMaxBytes } = options.config;
  return connectNodeAdapter({
    routes(inner) {
      const router = fast ? fast.record(inner) : inner;
      registerHealthService(router, health);
      registerReflectionServices(router, options.files);
      options.routes(router);
      // Undecodable request bodies answer INVALID_ARGUMENT rather than Connect's INTERNAL.
      const handlers = inner.handlers;
      for (let i = 0; i < handlers.length; i++) {
        handlers[i] = guardDecoding(
          handlers[i] as (typeof handlers)[number],
          readMaxBytes,
          defaultCompression,
        );
      }
    },
    // The compressions guardDecoding reads too (gzip, brotli: connect-node's default).
    acceptCompression: [...defaultCompression],
    interceptors,
    readMaxBytes,
    contextValues: (req) => createContextValues().set(admittedKey, admitted.get(req) ?? health.serving),
  });
}

/** `GET /metrics`, `GET /healthz`, then the service's own plain HTTP routes. */
export function httpRoutesOf(
  options: ServiceOptions,
  telemetry: Telemetry,
  health: HealthRegistry,
): Record<string, HttpRoute> {
  return {
    "/metrics": (req, res) => telemetry.metricsHandler(req as IncomingMessage, res as ServerResponse),
    "/healthz": (_req, res) => {
      const body = JSON.stringify({ status: ServingStatus[health.get("") ?? ServingStatus.NOT_SERVING] });
      res.writeHead(health.serving ? 200 : 503, { "content-type": "application/json" });
      res.end(body);
    },
    ...options.httpRoutes,
  };
}

/** The listener's handler of every request the fast path did not take: a plain route or an RPC. */
export function createRequestHandler(
  httpRoutes: Record<string, HttpRoute>,
  rpc: RpcHandler,
  admitted: WeakMap<object, boolean>,
  health: HealthRegistry,
  logger: Logger,
): NodeRequestHandler {
  return (req, res) => {
    const path = req.url?.split("?", 1)[0] ?? "/";
    const route = req.method === "GET" ? httpRoutes[path] : undefined;
    if (route) {
      Promise.resolve(route(req, res)).catch((err) => {
        logger.error({ err: errorForLog(err), path }, "http route failed");
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
      return;
    }
    const contentType = req.headers["content-type"];
    if (typeof contentType === "string" && contentType.startsWith("application/grpc-web-text")) {
      refuseGrpcWebText(contentType, res);
      return;
    }
    admitted.set(req, health.serving);
    if ("stream" in res) sliceLargeWrites(res);
    rpc(req, res);
  };
}

/**
 * gRPC-Web's text mode (base64 bodies, `application/grpc-web-text`) is not served (connect-node
 * reads binary gRPC-Web only, and answered a bare HTTP 415 that clients read as UNKNOWN): it is
 * UNIMPLEMENTED, trailers-only, naming the content type to send instead.
 */
function refuseGrpcWebText(contentType: string, res: ServerResponse | Http2ServerResponse): void {
  res.writeHead(200, {
    "content-type": contentType,
    "grpc-status": "12",
    "grpc-message": encodeURIComponent(
      "gRPC-Web text (application/grpc-web-text, base64) is not supported: send application/grpc-web+proto",
    ),
  });
  res.end();
}
