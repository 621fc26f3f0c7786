import { type Context, context, createContextKey } from "@opentelemetry/api";

const DEADLINE = createContextKey("meshwork.incoming-deadline");

/**
 * The deadline of the call being served, carried in the active OpenTelemetry context (the one
 * the runtime makes current for the handler), so that outgoing calls can be given no more than
 * what is left of it (`@meshwork/resilience`). `deadline` is ms since the epoch.
 */
export function withIncomingDeadline(ctx: Context, deadline: number): Context {
  return ctx.setValue(DEADLINE, deadline);
}

/** What is left of the incoming call's deadline in ms (never below 0), or undefined when none. */
export function remainingIncomingMs(now = Date.now()): number | undefined {
  const deadline = context.active().getValue(DEADLINE) as number | undefined;
  return deadline === undefined ? undefined : Math.max(0, deadline - now);
}

const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const GRPC_UNIT_MS = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 } as const;

/**
 * The timeout a call asks for in its headers: gRPC's `grpc-timeout` (`250m`, `5S`, ...) or
 * Connect's `connect-timeout-ms`, in ms; `error` names a malformed value (in Connect's words for
 * gRPC). Shared by the runtime (incoming calls), the resilience policies (outgoing calls) and the
 * gateway, so all three read a deadline the same way.
 */
export function requestTimeout(
  grpcTimeout: string | null | undefined,
  connectTimeoutMs: string | null | undefined,
): { ms?: number; error?: string } {
  if (typeof grpcTimeout === "string") {
    const m = GRPC_TIMEOUT.exec(grpcTimeout);
    if (!m) return { error: `protocol error: invalid grpc timeout value: ${grpcTimeout}` };
    return { ms: Number(m[1]) * GRPC_UNIT_MS[m[2] as keyof typeof GRPC_UNIT_MS] };
  }
  if (typeof connectTimeoutMs === "string") {
    if (!/^\d{1,10}$/.test(connectTimeoutMs))
      return { error: `invalid connect-timeout-ms: ${connectTimeoutMs}` };
    return { ms: Number(connectTimeoutMs) };
  }
  return {};
}
