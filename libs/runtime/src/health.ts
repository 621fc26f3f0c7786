import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@meshwork/contracts/grpc/health/v1/health";

export { HealthCheckResponse_ServingStatus as ServingStatus } from "@meshwork/contracts/grpc/health/v1/health";

type Listener = (status: ServingStatus) => void;

/**
 * The serving status of a process and of each service it serves, as `grpc.health.v1.Health`
 * reports it. The empty name `""` is the whole process. Statuses start NOT_SERVING: the runtime
 * flips them to SERVING once migrations ran and readiness checks pass, and back while draining.
 */
export class HealthRegistry {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #closed = new AbortController();

  constructor(services: readonly string[]) {
    this.#statuses.set("", ServingStatus.NOT_SERVING);
    for (const s of services) this.#statuses.set(s, ServingStatus.NOT_SERVING);
  }

  /** The status of `service`, or undefined when the service is not known here. */
  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /** Sets one service's status (the empty name is the whole process). */
  set(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    for (const l of this.#listeners.get(service) ?? []) l(status);
  }

  /** Sets every known service, and the process, to `status`. */
  setAll(status: ServingStatus): void {
    for (const s of [...this.#statuses.keys()]) this.set(s, status);
  }

  /** True when the process as a whole is SERVING. */
  get serving(): boolean {
    return this.#statuses.get("") === ServingStatus.SERVING;
  }

  /** Fires when the registry is closed; Watch streams end then. */
  get closedSignal(): AbortSignal {
    return this.#closed.signal;
  }

  /** Ends every Watch stream (after shutdown has reported NOT_SERVING). */
  close(): void {
    this.#closed.abort();
  }

  /** Calls `listener` on every change of `service`; returns the function that stops it. */
  subscribe(service: string, listener: Listener): () => void {
    let set = this.#listeners.get(service);
    if (!set) {
      set = new Set();
      this.#listeners.set(service, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }
}

function response(status: ServingStatus): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status });
}

/**
 * Registers `grpc.health.v1.Health` (Check and Watch) backed by `registry`. Check of an unknown
 * service is NOT_FOUND; Watch of an unknown service reports SERVICE_UNKNOWN and keeps watching,
 * as the gRPC health protocol asks.
 */
export function registerHealthService(router: ConnectRouter, registry: HealthRegistry): void {
  router.service(Health, {
    check(req) {
      const status = registry.get(req.service);
      if (status === undefined) {
        throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      }
      return response(status);
    },
    async *watch(req, ctx) {
      const queue: ServingStatus[] = [registry.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN];
      let wake: (() => void) | undefined;
      const unsubscribe = registry.subscribe(req.service, (s) => {
        queue.push(s);
        wake?.();
      });
      const stop = () => wake?.();
      ctx.signal.addEventListener("abort", stop);
      registry.closedSignal.addEventListener("abort", stop);
      try {
        let last: ServingStatus | undefined;
        for (;;) {
          while (queue.length > 0) {
            const s = queue.shift()!;
            if (s !== last) {
              last = s;
              yield response(s);
            }
          }
          if (ctx.signal.aborted || registry.closedSignal.aborted) return;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      } finally {
        unsubscribe();
        ctx.signal.removeEventListener("abort", stop);
        registry.closedSignal.removeEventListener("abort", stop);
      }
    },
  });
}
