import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";

const alwaysOpen = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/**
 * Whether the process was SERVING when the request arrived (its headers were received). The
 * runtime sets it per request; a call admitted before draining began still completes even if
 * its body arrives later.
 */
export const admittedKey = createContextKey<boolean>(true, { description: "meshwork.admitted" });

/**
 * Refuses calls with UNAVAILABLE when the process was not SERVING as they arrived (starting up,
 * a dependency down, or draining), so a client retries elsewhere instead of hitting a
 * half-ready service. Health and reflection always answer.
 */
export function createReadinessInterceptor(): Interceptor {
  return (next) => (req) => {
    if (!req.contextValues.get(admittedKey) && !alwaysOpen.has(req.service.typeName)) {
      return Promise.reject(
        new ConnectError("service is not serving (starting up or shutting down)", Code.Unavailable),
      );
    }
    return next(req);
  };
}
