import { randomUUID } from "node:crypto";
import type { AnyTransaction, DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import {
  context,
  type Meter,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { and, eq, inArray, isNull, lte, notInArray, or, TransactionRollbackError } from "drizzle-orm";
import { SagaAbort, type SagaDefinition, type SagaStep } from "./definition.js";
import type { SagaRow, SagaTable } from "./table.js";

/**
 * Starts a saga in the caller's transaction, so it exists if and only if the state it drives
 * commits (the order row, say). The current trace context is kept with it: every step's span
 * joins the trace of the request that started it. Call the executor's `kick()` after commit to
 * start at once rather than at the next poll.
 */
export async function startSaga<D>(
  tx: AnyTransaction,
  table: SagaTable,
  definition: SagaDefinition<D>,
  instance: { id: string; data: D },
): Promise<void> {
  await tx.insert(table).values(newSagaRow(definition, instance));
}

function newSagaRow<D>(definition: SagaDefinition<D>, instance: { id: string; data: D }) {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return {
    id: instance.id,
    type: definition.type,
    status: "running" as const,
    data: instance.data as unknown,
    traceparent: carrier.traceparent ?? null,
  };
}

export interface SagaExecutorOptions {
  // biome-ignore lint/suspicious/noExplicitAny: the executor works with any service's schema
  database: DatabaseHandle<any>;
  table: SagaTable;
  // biome-ignore lint/suspicious/noExplicitAny: definitions of different data types
  definitions: readonly SagaDefinition<any>[];
  logger: Logger;
  tracer: Tracer;
  meter: Meter;
  /** How long a claimed saga stays this executor's without progress; then another takes it. */
  leaseMs: number;
  /** How often runnable sagas are looked for besides `kick()`. */
  pollMs: number;
  /** Sagas claimed (and run side by side) at once. */
  batchSize: number;
  /** This executor's name in `lease_owner`; default a random one per process. */
  owner?: string;
}

export interface SagaExecutor {
  start(): Promise<void>;
  /** Stops claiming, lets the sagas in progress reach their next recorded point, returns. */
  stop(): Promise<void>;
  /** Looks for runnable sagas now (after a saga was started). */
  kick(): void;
  /**
   * Starts a saga in the caller's transaction, as {@link startSaga} does, but already leased to
   * this executor and with the first step's `beforeStep` run in that transaction too; call the
   * returned function once the transaction has committed, and the saga runs at once: no claim,
   * no wait for a poll, one transaction fewer. When the executor is full or stopping, the saga
   * is started unleased and the function kicks the executor instead. Should the process die
   * between the commit and that call, the saga is taken over once its lease runs out.
   */
  startIn<D>(
    tx: AnyTransaction,
    definition: SagaDefinition<D>,
    instance: { id: string; data: D },
  ): Promise<() => void>;
  /** Claims and runs one batch; resolves with how many sagas it worked on (tests). */
  runOnce(): Promise<number>;
}

const backoff = (attempt: number, initial: number, max: number) => {
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + Math.random() * (base / 2)); // "equal jitter"
};

const carrierGetter = {
  keys: (c: Record<string, string>) => Object.keys(c),
  get: (c: Record<string, string>, k: string) => c[k],
};

/**
 * Runs the sagas of a service's database. Each turn claims runnable sagas (`FOR UPDATE SKIP
 * LOCKED`, with a lease), so several instances share the work and a crashed instance's sagas are
 * taken over once their lease runs out. A step that fails is retried with backoff up to the
 * definition's attempts; a {@link SagaAbort} or an exhausted step compensates the completed
 * steps in reverse; compensations are retried until they succeed. Every recorded change checks
 * the lease, so an executor that lost its saga stops touching it.
 */
export function createSagaExecutor(options: SagaExecutorOptions): SagaExecutor {
  const { database, table: t, logger, tracer, meter } = options;
  const db = database.db;
  const owner = options.owner ?? `executor-${randomUUID()}`;
  const definitions = new Map(options.definitions.map((d) => [d.type, d]));
  const outcomes = meter.createCounter("saga.outcomes", {
    description: "Sagas finished, by type and outcome (completed, compensated)",
  });
  const stepFailures = meter.createCounter("saga.step.failures", {
    description: "Step and compensation attempts that failed, by type, step and phase",
  });
  let running = false;
  let wake: (() => void) | undefined;
  let loop: Promise<void> | undefined;
  const inFlight = new Set<Promise<void>>();

  /**
   * Updates the saga if this executor still holds it and it is still where `current` says (the
   * same status and step): false when the lease was lost or the saga moved on without us.
   */
  const record = async (
    current: Pick<SagaRow, "id" | "status" | "step">,
    changes: Partial<SagaRow>,
    also?: (tx: AnyTransaction) => Promise<void>,
  ): Promise<boolean> =>
    db
      .transaction(async (tx: AnyTransaction) => {
        // The saga's update and the hooks' first statement go out together (pipelined on the
        // transaction's connection, in the order they are started: the saga's row is locked
        // first, as everywhere else): one round trip fewer. When the lease turns out lost
        // (taken over), the hooks' work is rolled back with the rest.
        const updating = tx
          .update(t)
          .set({ ...changes, updatedAt: new Date() })
          .where(
            and(
              eq(t.id, current.id),
              eq(t.leaseOwner, owner),
              eq(t.status, current.status),
              eq(t.step, current.step),
            ),
          )
          .returning({ id: t.id })
          .then((rows) => rows);
        const [saga, hooks] = await Promise.allSettled([updating, also?.(tx)]);
        if (saga.status === "rejected") throw saga.reason;
        if (saga.value.length === 0) return tx.rollback(); // the lease was lost
        if (hooks.status === "rejected") throw hooks.reason;
        return true;
      })
      .catch((err: unknown) => {
        if (err instanceof TransactionRollbackError) return false;
        throw err;
      });

  const lease = () => new Date(Date.now() + options.leaseMs);
  const stepCount = (row: SagaRow) => definitions.get(row.type)?.steps.length ?? 0;
  /** Sagas this executor is driving now: never claimed again meanwhile, even past their lease. */
  const driving = new Set<string>();
  let kicked = false;
  const kick = () => {
    kicked = true; // seen by the loop even when it is not asleep now
    wake?.();
  };
  let stopping = false;

  const attempt = async <D>(
    def: SagaDefinition<D>,
    row: SagaRow,
    step: SagaStep<D>,
    phase: "action" | "compensate",
  ): Promise<{ ok: true } | { ok: false; err: unknown }> => {
    const carrier = row.traceparent ? { traceparent: row.traceparent } : {};
    const parent = propagation.extract(ROOT_CONTEXT, carrier, carrierGetter);
    const span = tracer.startSpan(
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
    // While the step runs, the lease is renewed (a third of it at a time), so a step longer than
    // the lease is not taken over by another executor as if this one had died.
    const heartbeat = setInterval(
      () => {
        db.update(t)
          .set({ leaseUntil: lease() })
          .where(
            and(eq(t.id, row.id), eq(t.leaseOwner, owner), eq(t.status, row.status), eq(t.step, row.step)),
          )
          .catch((err: unknown) => logger.warn({ err, saga_id: row.id }, "renewing a saga lease failed"));
      },
      Math.max(50, Math.floor(options.leaseMs / 3)),
    );
    heartbeat.unref();
    // The timeout holds even for a step that ignores its signal.
    let onAbort: (() => void) | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      onAbort = () =>
        reject(
          new Error(
            `${step.name}${phase === "action" ? "" : " compensation"} timed out after ${def.stepTimeoutMs} ms`,
          ),
        );
      signal.addEventListener("abort", onAbort, { once: true });
    });
    timedOut.catch(() => {});
    try {
      const fn = phase === "action" ? step.action : step.compensate;
      await Promise.race([
        context.with(trace.setSpan(parent, span), () =>
          fn?.({ sagaId: row.id, data: row.data as D, attempt: row.attempts + 1, signal }),
        ),
        timedOut,
      ]);
      span.setStatus({ code: SpanStatusCode.OK });
      return { ok: true };
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: String((err as Error)?.message ?? err) });
      stepFailures.add(1, { type: def.type, step: step.name, phase });
      return { ok: false, err };
    } finally {
      clearInterval(heartbeat);
      if (onAbort) signal.removeEventListener("abort", onAbort);
      span.end();
    }
  };

  /**
   * Runs one claimed saga until it finishes, must wait (backoff) or is lost. `checked`: the step
   * whose beforeStep already ran and let it go on (a saga started by `startIn`).
   */
  const drive = async (initial: SagaRow, alreadyChecked = -1): Promise<void> => {
    const def = definitions.get(initial.type);
    if (!def) return;
    let row = initial;
    const data = row.data;
    /** The step whose beforeStep already ran, in the transaction that recorded the one before. */
    let checked = alreadyChecked;
    for (;;) {
      if (stopping) {
        // Stopping: give the saga back at its last recorded point, for whoever runs next.
        await record(row, { leaseOwner: null, leaseUntil: null });
        return;
      }
      if (row.status === "running") {
        const step = def.steps[row.step];
        if (!step) {
          const done = await record(row, { status: "completed", leaseOwner: null, leaseUntil: null }, (tx) =>
            def.onCompleted ? def.onCompleted(tx, row.id, data) : Promise.resolve(),
          );
          if (done) {
            outcomes.add(1, { type: def.type, outcome: "completed" });
            logger.info({ saga_id: row.id, saga_type: def.type }, "saga completed");
          }
          return;
        }
        if (def.beforeStep && checked !== row.step) {
          let reason: string | undefined;
          const kept = await record(row, { leaseUntil: lease() }, async (tx) => {
            reason = await def.beforeStep?.(tx, row.id, data, step.name);
          });
          if (!kept) return;
          if (reason !== undefined) {
            const next = await compensateFrom(row, reason);
            if (!next) return;
            row = next;
            continue;
          }
        }
        const result = await attempt(def, row, step, "action");
        if (result.ok) {
          // One transaction records the step, and either completes the saga or runs the next
          // step's beforeStep: a saga of n steps commits n + 2 times, not 3n + 1.
          const following = def.steps[row.step + 1];
          const next = following
            ? { step: row.step + 1, attempts: 0, lastError: null, leaseUntil: lease() }
            : {
                step: row.step + 1,
                attempts: 0,
                lastError: null,
                status: "completed" as const,
                leaseOwner: null,
                leaseUntil: null,
              };
          let reason: string | undefined;
          const kept = await record(row, next, async (tx) => {
            await def.onStepDone?.(tx, row.id, data, step.name);
            if (!following) await def.onCompleted?.(tx, row.id, data);
            else if (def.beforeStep) reason = await def.beforeStep(tx, row.id, data, following.name);
          });
          if (!kept) return;
          logger.info({ saga_id: row.id, saga_type: def.type, step: step.name }, "saga step done");
          if (!following) {
            outcomes.add(1, { type: def.type, outcome: "completed" });
            logger.info({ saga_id: row.id, saga_type: def.type }, "saga completed");
            return;
          }
          row = { ...row, ...next };
          checked = row.step;
          if (reason !== undefined) {
            const compensating = await compensateFrom(row, reason);
            if (!compensating) return;
            row = compensating;
          }
          continue;
        }
        const message = errorMessage(result.err);
        if (result.err instanceof SagaAbort) {
          logger.info(
            { saga_id: row.id, step: step.name, reason: message },
            "saga step refused: compensating",
          );
          const next = await compensateFrom(row, message);
          if (!next) return;
          row = next;
          continue;
        }
        const attempts = row.attempts + 1;
        if (attempts >= def.maxAttempts) {
          logger.warn(
            { saga_id: row.id, step: step.name, attempts, err: message },
            "saga step gave up: compensating",
          );
          const next = await compensateFrom(row, message);
          if (!next) return;
          row = next;
          continue;
        }
        logger.info(
          { saga_id: row.id, step: step.name, attempts, err: message },
          "saga step failed: will retry",
        );
        await retryLater(def, row, attempts, message);
        return;
      }
      if (row.status === "compensating") {
        if (row.step < 0) {
          const reason = row.failure ?? "failed";
          const done = await record(
            row,
            { status: "compensated", leaseOwner: null, leaseUntil: null },
            (tx) => (def.onCompensated ? def.onCompensated(tx, row.id, data, reason) : Promise.resolve()),
          );
          if (done) {
            outcomes.add(1, { type: def.type, outcome: "compensated" });
            logger.info({ saga_id: row.id, saga_type: def.type, reason }, "saga compensated");
          }
          return;
        }
        const step = def.steps[row.step];
        const result = step?.compensate ? await attempt(def, row, step, "compensate") : { ok: true as const };
        if (result.ok) {
          const next = { step: row.step - 1, attempts: 0, lastError: null, leaseUntil: lease() };
          if (!(await record(row, next))) return;
          row = { ...row, ...next };
          continue;
        }
        const message = errorMessage(result.err);
        const attempts = row.attempts + 1;
        logger.warn(
          { saga_id: row.id, step: step?.name, attempts, err: message },
          "saga compensation failed: will retry",
        );
        await retryLater(def, row, attempts, message);
        return;
      }
      return;
    }
  };

  /** Gives the saga back after a failed attempt, runnable again after the backoff. */
  const retryLater = <D>(def: SagaDefinition<D>, row: SagaRow, attempts: number, message: string) =>
    record(row, {
      attempts,
      lastError: message,
      nextAttemptAt: new Date(Date.now() + backoff(attempts, def.initialDelayMs, def.maxDelayMs)),
      leaseOwner: null,
      leaseUntil: null,
    });

  /**
   * Switches to compensation, starting with the current step: it failed, was refused or was about
   * to run, and may still have taken effect (an attempt whose answer was lost), so it is undone
   * too; compensations are idempotent and find nothing to undo when it never happened.
   */
  const compensateFrom = async (row: SagaRow, reason: string): Promise<SagaRow | undefined> => {
    const next = {
      status: "compensating" as const,
      step: Math.min(row.step, stepCount(row) - 1),
      attempts: 0,
      failure: reason,
      leaseUntil: lease(),
    };
    return (await record(row, next)) ? { ...row, ...next } : undefined;
  };

  const claim = async (limit: number): Promise<SagaRow[]> => {
    const now = new Date();
    const candidates = db
      .select({ id: t.id })
      .from(t)
      .where(
        and(
          inArray(t.status, ["running", "compensating"]),
          inArray(t.type, [...definitions.keys()]),
          lte(t.nextAttemptAt, now),
          or(isNull(t.leaseUntil), lte(t.leaseUntil, now)),
          driving.size > 0 ? notInArray(t.id, [...driving]) : undefined,
        ),
      )
      .orderBy(t.nextAttemptAt)
      .limit(limit)
      .for("update", { skipLocked: true });
    return db
      .update(t)
      .set({ leaseOwner: owner, leaseUntil: lease() })
      .where(inArray(t.id, candidates))
      .returning();
  };

  const launch = (r: SagaRow, checked = -1): Promise<void> => {
    driving.add(r.id);
    const p: Promise<void> = drive(r, checked)
      .catch((err) => logger.error({ err, saga_id: r.id }, "saga run failed"))
      .finally(() => {
        driving.delete(r.id);
        inFlight.delete(p);
        wake?.(); // room for another
      });
    inFlight.add(p);
    return p;
  };

  /** Claims as many sagas as there is room for and starts them; resolves with how many. */
  const pump = async (): Promise<number> => {
    const room = options.batchSize - inFlight.size;
    if (room <= 0) return 0;
    const rows = await claim(room);
    for (const r of rows) void launch(r);
    return rows.length;
  };

  const runOnce = async (): Promise<number> => {
    const rows = await claim(options.batchSize);
    await Promise.all(rows.map(launch));
    return rows.length;
  };

  return {
    async start() {
      if (running) return;
      running = true;
      loop = (async () => {
        while (running) {
          let claimed = 0;
          try {
            claimed = await pump();
          } catch (err) {
            logger.warn({ err }, "claiming sagas failed");
          }
          if (!running) break;
          if ((claimed > 0 || kicked) && inFlight.size < options.batchSize) {
            kicked = false;
            continue;
          }
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, options.pollMs);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
      })();
    },
    async stop() {
      stopping = true;
      running = false;
      wake?.();
      await loop;
      await Promise.all(inFlight);
    },
    kick,
    async startIn(tx, definition, instance) {
      const def = definitions.get(definition.type);
      if (!def || !running || stopping || inFlight.size >= options.batchSize) {
        await startSaga(tx, t, definition, instance);
        return kick;
      }
      const first = def.steps[0];
      // The saga's row and the first step's check go out together (pipelined). The step goes
      // on, or the saga runs the check again in its own transaction and acts on the reason then.
      const inserting = tx
        .insert(t)
        .values({ ...newSagaRow(definition, instance), leaseOwner: owner, leaseUntil: lease() })
        .returning()
        .then((rows) => rows);
      const [[row], reason] = await Promise.all([
        inserting,
        first && def.beforeStep ? def.beforeStep(tx, instance.id, instance.data, first.name) : undefined,
      ]);
      if (!row) throw new Error(`saga ${instance.id} was not stored`);
      const goOn = reason === undefined;
      return () => {
        // Stopping: left leased, it is taken over once the lease runs out. Otherwise it runs
        // even if the executor filled up meanwhile (past its limit only by the starts that
        // committed at that moment).
        // Outside the caller's context (a request's): the saga outlives it.
        if (!stopping) context.with(ROOT_CONTEXT, () => void launch(row, goOn ? 0 : -1));
      };
    },
    runOnce,
  };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
