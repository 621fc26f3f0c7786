import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { HealthRegistry } from "../health.js";

const alwaysOpen = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/**
 * Refuses calls with UNAVAILABLE while the process is not SERVING (starting up, a dependency
 * down, or draining), so a client retries elsewhere instead of hitting a half-ready service.
 * Health and reflection always answer.
 */
export function createReadinessInterceptor(health: HealthRegistry): Interceptor {
  return (next) => async (req) => {
    if (!health.serving && !alwaysOpen.has(req.service.typeName)) {
      throw new ConnectError("service is not serving (starting up or shutting down)", Code.Unavailable);
    }
    return next(req);
  };
}
