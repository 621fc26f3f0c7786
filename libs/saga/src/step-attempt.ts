import { exceptionForSpan } from "@meshwork/telemetry";
import {
  type Counter,
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { SagaDefinition, SagaStep } from "./definition.js";
import type { SagaRow } from "./table.js";

/** What an attempt needs of its executor. */
export interface AttemptDeps {
  tracer: Tracer;
  /** Counts failed attempts, by type, step and phase. */
  stepFailures: Counter;
  /** Renews the saga's lease (called every `heartbeatMs` while the step runs). */
  renew(row: SagaRow): void;
  heartbeatMs: number;
}

/** How one attempt ended. */
export type AttemptResult = { ok: true; value: unknown } | { ok: false; err: unknown };

const carrierGetter = {
  keys: (c: Record<string, string>) => Object.keys(c),
  get: (c: Record<string, string>, k: string) => c[k],
};

/**
 * Runs one attempt of a step's action or compensation: in a span of the trace that started the
 * saga, with the step's timeout (kept even by a step that ignores its signal) and the lease
 * renewed while it runs, so a step longer than the lease is not taken over by another executor
 * as if this one had died. Never throws: the failure is in the result.
 */
export async function attemptStep<D>(
  deps: AttemptDeps,
  def: SagaDefinition<D>,
  row: SagaRow,
  step: SagaStep<D>,
  phase: "action" | "compensate",
): Promise<AttemptResult> {
  const carrier = row.traceparent ? { traceparent: row.traceparent } : {};
  const parent = propagation.extract(ROOT_CONTEXT, carrier, carrierGetter);
  const span = deps.tracer.startSpan(
    `saga ${def.type} ${phase === "action" ? step.name : `compensate ${step.name}`}`,
    {
      kind: SpanKind.INTERNAL,
      attributes: {
        "saga.type": def.type,
        "saga.id": row.id,
        "saga.step": step.name,
        "saga.phase": phase,
        "saga.attempt": row.attempts + 1,
      },
    },
    parent,
  );
  const signal = AbortSignal.timeout(def.stepTimeoutMs);
  const heartbeat = setInterval(() => deps.renew(row), deps.heartbeatMs);
  heartbeat.unref();
  const timeout = rejectOnAbort(
    signal,
    () => new StepTimeoutError(`${step.name}${phase === "action" ? "" : " compensation"}`, def.stepTimeoutMs),
  );
  try {
    const fn = phase === "action" ? step.action : step.compensate;
    const value = await Promise.race([
      context.with(trace.setSpan(parent, span), () =>
        fn?.({ sagaId: row.id, data: row.data as D, attempt: row.attempts + 1, signal }),
      ),
      timeout.promise,
    ]);
    span.setStatus({ code: SpanStatusCode.OK });
    return { ok: true, value };
  } catch (err) {
    // Scrubbed: a step's failed statement holds its parameters.
    const exception = exceptionForSpan(err);
    span.recordException(exception);
    span.setStatus({ code: SpanStatusCode.ERROR, message: exception.message });
    deps.stepFailures.add(1, { type: def.type, step: step.name, phase });
    return { ok: false, err };
  } finally {
    clearInterval(heartbeat);
    timeout.dispose();
    span.end();
  }
}

/** A step (or compensation) that outlived its timeout. */
export class StepTimeoutError extends Error {
  override readonly name = "StepTimeoutError";
  constructor(what: string, timeoutMs: number) {
    super(`${what} timed out after ${timeoutMs} ms`);
  }
}

/** A promise that rejects with `error()` once `signal` aborts, and a way to stop listening. */
function rejectOnAbort(signal: AbortSignal, error: () => Error) {
  let onAbort: (() => void) | undefined;
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(error());
    signal.addEventListener("abort", onAbort, { once: true });
  });
  promise.catch(() => {});
  return {
    promise,
    dispose: () => {
      if (onAbort) signal.removeEventListener("abort", onAbort);
    },
  };
}
