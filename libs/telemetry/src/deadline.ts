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
