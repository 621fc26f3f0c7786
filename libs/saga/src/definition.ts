import type { AnyTransaction } from "@meshwork/db";

/** What a step sees: the saga's id (every step's idempotency key) and its data. */
export interface StepContext<D> {
  sagaId: string;
  data: D;
  /** 1 for the first attempt of this step (or compensation). */
  attempt: number;
  /** Aborted when the step's timeout passes. */
  signal: AbortSignal;
}

/** One step of a saga: an action keyed by the saga's id, and how to undo it. */
export interface SagaStep<D> {
  name: string;
  /** Does the step; must be idempotent by `sagaId`. Throw {@link SagaAbort} for a business failure. */
  action(ctx: StepContext<D>): Promise<void>;
  /**
   * Undoes it; must be idempotent; retried until it succeeds. Resolving `true` says it undid
   * something (a payment refunded, not merely found never captured): the step's name is then
   * kept with the saga and handed to `onCompensated` in `undone`.
   */
  compensate?(ctx: StepContext<D>): Promise<unknown>;
}

/** A business failure (no stock, payment declined): no retry, compensate at once, for `reason`. */
export class SagaAbort extends Error {
  override readonly name = "SagaAbort";
}

/**
 * A transient failure: the other side is unavailable for now (its breaker open, UNAVAILABLE, a
 * deadline exceeded, a restart). It does not spend the step's `maxAttempts`: the step is
 * retried (backoff up to `maxDelayMs`) until `transientBudgetMs` has passed since the step's
 * first transient failure, and compensates only then. Without a budget it counts as any
 * failure.
 */
export class SagaUnavailable extends Error {
  override readonly name = "SagaUnavailable";
}

/**
 * A kind of saga: its steps in order, the hooks that change the service's own state in the
 * saga's transactions, and its retry policy. Given to `createSagaExecutor`; instances are
 * started with `startSaga` or the executor's `startIn`.
 */
export interface SagaDefinition<D> {
  /** Stored with each instance; the executor runs instances of the types it was given. */
  type: string;
  steps: readonly SagaStep<D>[];
  /**
   * Before a step runs: a reason to stop instead (a cancellation asked for), or undefined to go
   * on. Whatever it writes (a "capturing" mark) commits with its transaction: the one that starts
   * the saga (first step; not run there when the caller of `startIn` passes `firstStepChecked`,
   * vouching that the check would neither write nor refuse), else the one that records the step
   * before as done. In the latter it is
   * started together with that step's `onStepDone` (one round trip fewer per step): its first
   * statement is sent after `onStepDone`'s first and sees what that wrote, but the two hooks run
   * concurrently after that, so neither may depend on the other's later statements.
   */
  beforeStep?(tx: AnyTransaction, sagaId: string, data: D, step: string): Promise<string | undefined>;
  /** In the transaction that records a step as done (the order's status). */
  onStepDone?(tx: AnyTransaction, sagaId: string, data: D, step: string): Promise<void>;
  /** In the transaction that completes the saga. */
  onCompleted?(tx: AnyTransaction, sagaId: string, data: D): Promise<void>;
  /**
   * In the transaction that records the end of compensation, with the failure's reason and the
   * steps whose compensation said it undid something (see {@link SagaStep.compensate}).
   */
  onCompensated?(
    tx: AnyTransaction,
    sagaId: string,
    data: D,
    reason: string,
    undone: readonly string[],
  ): Promise<void>;
  /**
   * After the transaction that ended the saga committed (never for a run that lost its lease
   * meanwhile: the run that ends it calls it): for what lives outside the database, such as
   * business counters. `reason` is the failure's for a compensated saga. Must not throw.
   */
  onEnded?(sagaId: string, data: D, outcome: "completed" | "compensated", reason?: string): void;
  /** Attempts of a step before the saga gives up and compensates (compensations never give up). */
  maxAttempts: number;
  /** Backoff between attempts: doubles from `initialDelayMs` up to `maxDelayMs`, with jitter. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** A step (or compensation) attempt longer than this fails (and is retried). */
  stepTimeoutMs: number;
  /**
   * How long a step may keep failing transiently ({@link SagaUnavailable}, or its own timeout)
   * before the saga compensates, from the step's first transient failure; such failures do not
   * count against `maxAttempts`. Kept in the saga's row, so the wait survives a restart.
   * Undefined: transient failures count as any other.
   */
  transientBudgetMs?: number;
}
