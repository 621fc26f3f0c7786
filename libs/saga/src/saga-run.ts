import type { AnyTransaction } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import type { Counter, Histogram } from "@opentelemetry/api";
import { SagaAbort, type SagaDefinition, type SagaStep, SagaUnavailable } from "./definition.js";
import type { LeaseStore } from "./lease-store.js";
import { type AttemptDeps, attemptStep, StepTimeoutError } from "./step-attempt.js";
import type { SagaHistoryEntry, SagaRow } from "./table.js";

/** What a saga run needs of its executor. */
export interface SagaRunDeps {
  store: LeaseStore;
  attempt: AttemptDeps;
  logger: Logger;
  /** Sagas finished, by type and outcome. */
  outcomes: Counter;
  /** Seconds from a saga's start (its row's creation) to its end, by type and outcome. */
  duration: Histogram;
  /** True once the executor is stopping: the run hands its saga back at the next point. */
  stopping(): boolean;
}

/** What a turn of the state machine leads to: go on with the saga, or leave it (done or lost). */
type Next = "continue" | "leave";

/** Equal-jitter exponential backoff: doubles from `initial` up to `max`. */
export const backoff = (attempt: number, initial: number, max: number): number => {
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + Math.random() * (base / 2));
};

/** A step's counters when it starts afresh. */
const FRESH_STEP = { attempts: 0, transientAttempts: 0, transientSince: null, lastError: null };

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Failed attempts of one step kept in the history: a compensation is retried until it succeeds,
 * so a long outage would grow the row without end. Later attempts still update the row's
 * `attempts` and `last_error`; the entry that ends the step is always kept.
 */
export const HISTORY_ATTEMPTS = 20;

/** A history entry for `step`, now. */
function entry(
  step: string,
  phase: SagaHistoryEntry["phase"],
  outcome: SagaHistoryEntry["outcome"],
  attempt: number,
  extra: { error?: string; retryAt?: Date } = {},
): SagaHistoryEntry[] {
  if ((outcome === "failed" || outcome === "unavailable") && attempt > HISTORY_ATTEMPTS) return [];
  return [
    {
      step,
      phase,
      outcome,
      attempt,
      at: new Date().toISOString(),
      ...(extra.error !== undefined ? { error: extra.error } : {}),
      ...(extra.retryAt ? { retryAt: extra.retryAt.toISOString() } : {}),
    },
  ];
}

/**
 * One claimed saga, driven until it finishes, must wait (a backoff, recorded for whoever runs it
 * next) or is lost (its lease taken over). Its state is the row as last recorded; each turn
 * runs one step or compensation and records where that leaves the saga. `finish` is the one
 * place a saga ends.
 */
export class SagaRun<D> {
  private row: SagaRow;
  /** The step whose beforeStep already ran, in the transaction that recorded the one before. */
  private checked: number;

  constructor(
    private readonly deps: SagaRunDeps,
    private readonly def: SagaDefinition<D>,
    initial: SagaRow,
    alreadyChecked = -1,
  ) {
    this.row = initial;
    this.checked = alreadyChecked;
  }

  /** Drives the saga until it finishes, waits, is handed back or is lost. */
  async drive(): Promise<void> {
    for (;;) {
      if (this.deps.stopping()) {
        // Stopping: give the saga back at its last recorded point, for whoever runs next.
        await this.deps.store.release(this.row);
        return;
      }
      const next =
        this.row.status === "running"
          ? await this.forward()
          : this.row.status === "compensating"
            ? await this.backward()
            : "leave";
      if (next === "leave") return;
    }
  }

  private get data(): D {
    return this.row.data as D;
  }

  /** A running saga: check and run its next step, or complete it when none is left. */
  private async forward(): Promise<Next> {
    const { def, row } = this;
    const step = def.steps[row.step];
    if (!step) return this.finish("completed", {});
    if (def.beforeStep && this.checked !== row.step) {
      let reason: string | undefined;
      const kept = await this.deps.store.record(row, { leaseUntil: this.deps.store.lease() }, async (tx) => {
        reason = await def.beforeStep?.(tx, row.id, this.data, step.name);
      });
      if (!kept) return "leave";
      if (reason !== undefined)
        return this.compensateFrom(reason, entry(step.name, "action", "stopped", 0, { error: reason }));
    }
    const result = await attemptStep(this.deps.attempt, def, row, step, "action");
    const attempts = row.attempts + 1;
    if (result.ok) return this.stepDone(step, attempts);
    const message = errorMessage(result.err);
    if (result.err instanceof SagaAbort) {
      this.deps.logger.info(
        { saga_id: row.id, step: step.name, reason: message },
        "saga step refused: compensating",
      );
      return this.compensateFrom(
        message,
        entry(step.name, "action", "refused", attempts, { error: message }),
      );
    }
    if (this.isTransient(result.err)) return this.unavailable(step, message);
    if (attempts - row.transientAttempts >= def.maxAttempts) {
      this.deps.logger.warn(
        { saga_id: row.id, step: step.name, attempts, err: message },
        "saga step gave up: compensating",
      );
      return this.compensateFrom(
        message,
        entry(step.name, "action", "gave_up", attempts, { error: message }),
      );
    }
    this.deps.logger.info(
      { saga_id: row.id, step: step.name, attempts, err: message },
      "saga step failed: will retry",
    );
    return this.retryLater(step.name, "action", attempts, message);
  }

  /** A failure that only waits out the transient budget (when the definition has one). */
  private isTransient(err: unknown): boolean {
    return (
      this.def.transientBudgetMs !== undefined &&
      (err instanceof SagaUnavailable || err instanceof StepTimeoutError)
    );
  }

  /**
   * A transient failure of `step`: retried after a backoff (never past the budget's end, so the
   * last try is at that moment), without spending its attempts; once the budget, counted from
   * the step's first transient failure, has passed: compensates. The wait is recorded in the
   * saga's row, so it survives a restart.
   */
  private async unavailable(step: SagaStep<D>, message: string): Promise<Next> {
    const { def, row } = this;
    const now = Date.now();
    const since = row.transientSince ?? new Date(now);
    const end = since.getTime() + (def.transientBudgetMs ?? 0);
    const log = { saga_id: row.id, step: step.name, since: since.toISOString(), err: message };
    const attempt = row.attempts + 1;
    if (now >= end) {
      this.deps.logger.warn(log, "saga step unavailable beyond its budget: compensating");
      return this.compensateFrom(message, entry(step.name, "action", "gave_up", attempt, { error: message }));
    }
    const transientAttempts = row.transientAttempts + 1;
    this.deps.logger.info(log, "saga step unavailable: will retry");
    const delay = backoff(transientAttempts, def.initialDelayMs, def.maxDelayMs);
    const retryAt = new Date(Math.min(now + delay, end));
    await this.deps.store.retryLater(
      row,
      retryAt,
      { attempts: attempt, transientAttempts, transientSince: since, lastError: message },
      entry(step.name, "action", "unavailable", attempt, { error: message, retryAt }),
    );
    return "leave";
  }

  /**
   * Records a step as done. One transaction records the step, and either completes the saga or
   * runs the next step's beforeStep: a saga of n steps commits n + 2 times, not 3n + 1.
   */
  private async stepDone(step: SagaStep<D>, attempt: number): Promise<Next> {
    const { def, row } = this;
    const done = entry(step.name, "action", "done", attempt);
    const following = def.steps[row.step + 1];
    const progress = { step: row.step + 1, ...FRESH_STEP };
    const onStepDone = (tx: AnyTransaction) => def.onStepDone?.(tx, row.id, this.data, step.name);
    const logDone = () =>
      this.deps.logger.info({ saga_id: row.id, saga_type: def.type, step: step.name }, "saga step done");
    if (!following) return this.finish("completed", progress, onStepDone, logDone, done);
    const next = { ...progress, leaseUntil: this.deps.store.lease() };
    let reason: string | undefined;
    const kept = await this.deps.store.record(
      row,
      next,
      async (tx) => {
        // Both hooks start together, so their first statements go out pipelined on the
        // transaction's connection, in this order: one round trip fewer per step (see
        // SagaDefinition.beforeStep for what a hook may rely on). Both are settled before the
        // transaction ends, whichever fails, so neither runs a statement after the rollback.
        const [done, checked] = await Promise.allSettled([
          onStepDone(tx),
          def.beforeStep?.(tx, row.id, this.data, following.name),
        ]);
        if (done.status === "rejected") throw done.reason;
        if (checked.status === "rejected") throw checked.reason;
        reason = checked.value;
      },
      done,
    );
    if (!kept) return "leave";
    logDone();
    this.row = { ...row, ...next };
    this.checked = this.row.step;
    return reason === undefined
      ? "continue"
      : this.compensateFrom(reason, entry(following.name, "action", "stopped", 0, { error: reason }));
  }

  /** A compensating saga: undo its current step, or end it when every step is undone. */
  private async backward(): Promise<Next> {
    const { def, row } = this;
    if (row.step < 0) return this.finish("compensated", {});
    const step = def.steps[row.step];
    const result = step?.compensate
      ? await attemptStep(this.deps.attempt, def, row, step, "compensate")
      : { ok: true as const, value: undefined };
    const attempts = row.attempts + 1;
    if (result.ok) {
      // A compensation that says it undid something (a refund) is remembered for onCompensated.
      const didUndo = result.value === true && step !== undefined;
      const undone = didUndo ? { undone: [...row.undone, step.name] } : {};
      const next = {
        step: row.step - 1,
        attempts: 0,
        lastError: null,
        leaseUntil: this.deps.store.lease(),
        ...undone,
      };
      // A step without a compensation has nothing to record: nothing ran.
      const log =
        step?.compensate !== undefined
          ? entry(step.name, "compensate", didUndo ? "undone" : "done", attempts)
          : undefined;
      if (!(await this.deps.store.record(row, next, undefined, log))) return "leave";
      this.row = { ...row, ...next };
      return "continue";
    }
    const message = errorMessage(result.err);
    this.deps.logger.warn(
      { saga_id: row.id, step: step?.name, attempts, err: message },
      "saga compensation failed: will retry",
    );
    return this.retryLater(step?.name ?? String(row.step), "compensate", attempts, message);
  }

  /**
   * The one place a saga ends: records the outcome with `changes` and, in the same transaction,
   * `before` and the definition's hook for it (onCompleted, onCompensated); then counts and logs
   * it (after `after`) unless the lease was lost meanwhile.
   */
  private async finish(
    outcome: "completed" | "compensated",
    changes: Partial<SagaRow>,
    before?: (tx: AnyTransaction) => Promise<void> | undefined,
    after?: () => void,
    log?: readonly SagaHistoryEntry[],
  ): Promise<Next> {
    const { def, row } = this;
    const reason = row.failure ?? "failed";
    const hook = (tx: AnyTransaction) =>
      outcome === "completed"
        ? def.onCompleted?.(tx, row.id, this.data)
        : def.onCompensated?.(tx, row.id, this.data, reason, row.undone);
    const done = await this.deps.store.record(
      row,
      { ...changes, status: outcome, leaseOwner: null, leaseUntil: null },
      before
        ? async (tx) => {
            await before(tx);
            await hook(tx);
          }
        : async (tx) => hook(tx),
      log,
    );
    if (done) {
      after?.();
      def.onEnded?.(row.id, this.data, outcome, outcome === "compensated" ? reason : undefined);
      const attrs = { type: def.type, outcome };
      this.deps.outcomes.add(1, attrs);
      this.deps.duration.record(Math.max(0, Date.now() - row.createdAt.getTime()) / 1000, attrs);
      if (outcome === "completed")
        this.deps.logger.info({ saga_id: row.id, saga_type: def.type }, "saga completed");
      else this.deps.logger.info({ saga_id: row.id, saga_type: def.type, reason }, "saga compensated");
    }
    return "leave";
  }

  /** Gives the saga back after a failed attempt, runnable again after the backoff. */
  private async retryLater(
    step: string,
    phase: SagaHistoryEntry["phase"],
    attempts: number,
    message: string,
  ): Promise<Next> {
    const delay = backoff(attempts, this.def.initialDelayMs, this.def.maxDelayMs);
    const retryAt = new Date(Date.now() + delay);
    await this.deps.store.retryLater(
      this.row,
      retryAt,
      { attempts, lastError: message },
      entry(step, phase, "failed", attempts, { error: message, retryAt }),
    );
    return "leave";
  }

  private async compensateFrom(reason: string, log: readonly SagaHistoryEntry[]): Promise<Next> {
    const next = await this.deps.store.compensateFrom(this.row, reason, this.def.steps.length, log);
    if (!next) return "leave";
    this.row = next;
    return "continue";
  }
}
