import { randomUUID } from "node:crypto";
import type { AnyTransaction, DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import {
  type Context,
  type Counter,
  context,
  type Meter,
  propagation,
  ROOT_CONTEXT,
  type Tracer,
} from "@opentelemetry/api";
import type { SagaDefinition } from "./definition.js";
import { createLeaseStore, type LeaseStore } from "./lease-store.js";
import { SagaRun, type SagaRunDeps } from "./saga-run.js";
import { newSagaRow, prepareLeasedInsert, startSaga } from "./start.js";
import type { SagaRow, SagaTable } from "./table.js";

/** How an executor runs: its database and table, the definitions it runs, its pace. */
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

/** A running loop over a service's sagas; see {@link createSagaExecutor}. */
export interface SagaExecutor {
  /** Starts the loop: claims runnable sagas every `pollMs` and on `kick()`. */
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
   *
   * `options.firstStepChecked`: the caller vouches that the first step's `beforeStep` would let
   * it go on and has nothing to write, as of this transaction (it created, in it, the row the
   * check reads): the check is not run (one statement fewer per start). A saga taken over or
   * run again later checks as usual.
   */
  startIn<D>(
    tx: AnyTransaction,
    definition: SagaDefinition<D>,
    instance: { id: string; data: D },
    options?: StartInOptions,
  ): Promise<() => void>;
  /** Claims and runs one batch; resolves with how many sagas it worked on (tests). */
  runOnce(): Promise<number>;
}

/** How {@link SagaExecutor.startIn} starts a saga. */
export interface StartInOptions {
  /** The first step's `beforeStep` is known to pass in the caller's transaction: not run. */
  firstStepChecked?: boolean;
}

/**
 * Runs the sagas of a service's database. Each turn claims runnable sagas (`FOR UPDATE SKIP
 * LOCKED`, with a lease), so several instances share the work and a crashed instance's sagas are
 * taken over once their lease runs out. A step that fails is retried with backoff up to the
 * definition's attempts; a {@link SagaAbort} or an exhausted step compensates the completed
 * steps in reverse; compensations are retried until they succeed. Every recorded change checks
 * the lease, so an executor that lost its saga stops touching it.
 *
 * This file is the loop (start, stop, kick, startIn); one saga's state machine is `SagaRun`
 * (saga-run.ts), one attempt of a step `attemptStep` (step-attempt.ts), and the leases and
 * recorded changes the `LeaseStore` (lease-store.ts).
 */
export function createSagaExecutor(options: SagaExecutorOptions): SagaExecutor {
  return new SagaLoop(options);
}

/** The executor's loop: claims sagas, runs each as a {@link SagaRun}, sleeps until a poll or a kick. */
class SagaLoop implements SagaExecutor {
  private readonly definitions: Map<string, SagaDefinition<unknown>>;
  private readonly store: LeaseStore;
  private readonly runDeps: SagaRunDeps;
  private running = false;
  private stopping = false;
  private kicked = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  /** Sagas this executor is driving now: never claimed again meanwhile, even past their lease. */
  private readonly driving = new Set<string>();
  private readonly started: Counter;
  private readonly insertLeased: ReturnType<typeof prepareLeasedInsert>;

  constructor(private readonly options: SagaExecutorOptions) {
    const { logger, meter } = options;
    this.definitions = new Map(options.definitions.map((d) => [d.type, d]));
    const store = createLeaseStore({
      database: options.database,
      table: options.table,
      owner: options.owner ?? `executor-${randomUUID()}`,
      leaseMs: options.leaseMs,
      logger,
    });
    this.store = store;
    this.insertLeased = prepareLeasedInsert(options.table);
    this.started = meter.createCounter("saga.started", {
      description: "Sagas started through the executor (counted once their transaction committed), by type",
    });
    this.runDeps = {
      store,
      logger,
      outcomes: meter.createCounter("saga.outcomes", {
        description: "Sagas finished, by type and outcome (completed, compensated)",
      }),
      duration: meter.createHistogram("saga.duration", {
        description: "Time from a saga's start to its end, by type and outcome (completed, compensated)",
        unit: "s",
        advice: { explicitBucketBoundaries: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] },
      }),
      attempt: {
        tracer: options.tracer,
        stepFailures: meter.createCounter("saga.step.failures", {
          description: "Step and compensation attempts that failed, by type, step and phase",
        }),
        renew: (row) => store.renew(row),
        heartbeatMs: Math.max(50, Math.floor(options.leaseMs / 3)),
      },
      stopping: () => this.stopping,
    };
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.loop = this.runLoop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.running = false;
    this.wake?.();
    await this.loop;
    await Promise.all(this.inFlight);
  }

  readonly kick = (): void => {
    this.kicked = true; // seen by the loop even when it is not asleep now
    this.wake?.();
  };

  async startIn<D>(
    tx: AnyTransaction,
    definition: SagaDefinition<D>,
    instance: { id: string; data: D },
    options: StartInOptions = {},
  ): Promise<() => void> {
    const def = this.definitions.get(definition.type);
    const started = { type: definition.type };
    if (!def || !this.running || this.stopping || this.inFlight.size >= this.options.batchSize) {
      await startSaga(tx, this.options.table, definition, instance);
      return () => {
        this.started.add(1, started);
        this.kick();
      };
    }
    const first = def.steps[0];
    // The saga's row and the first step's check go out together (pipelined). The step goes
    // on, or the saga runs the check again in its own transaction and acts on the reason then.
    const inserting = this.insertLeased.execute(tx, {
      ...newSagaRow(definition, instance),
      leaseOwner: this.store.owner,
      leaseUntil: this.store.lease(),
    });
    const [[row], reason] = await Promise.all([
      inserting,
      first && def.beforeStep && !options.firstStepChecked
        ? def.beforeStep(tx, instance.id, instance.data, first.name)
        : undefined,
    ]);
    if (!row) throw new Error(`saga ${instance.id} was not stored`);
    const goOn = reason === undefined;
    return () => {
      this.started.add(1, started);
      // Stopping: left leased, it is taken over once the lease runs out. Otherwise it runs
      // even if the executor filled up meanwhile (past its limit only by the starts that
      // committed at that moment).
      // Outside the caller's context (a request's): the saga outlives it.
      if (!this.stopping) context.with(ROOT_CONTEXT, () => void this.launch(row, goOn ? 0 : -1));
    };
  }

  async runOnce(): Promise<number> {
    const rows = await this.claim(this.options.batchSize);
    await Promise.all(rows.map((r) => this.launch(r)));
    return rows.length;
  }

  private claim(limit: number): Promise<SagaRow[]> {
    return this.store.claim(limit, [...this.definitions.keys()], this.driving);
  }

  private launch(r: SagaRow, checked = -1): Promise<void> {
    const def = this.definitions.get(r.type);
    this.driving.add(r.id);
    // In the trace that started the saga: its records, its end (the events its hooks write to
    // the outbox) and its log lines join the request's trace, as its steps' spans do.
    const run = def
      ? context.with(sagaContext(r), () => new SagaRun(this.runDeps, def, r, checked).drive())
      : Promise.resolve();
    const p: Promise<void> = run
      .catch((err) => this.options.logger.error({ err, saga_id: r.id }, "saga run failed"))
      .finally(() => {
        this.driving.delete(r.id);
        this.inFlight.delete(p);
        this.wake?.(); // room for another
      });
    this.inFlight.add(p);
    return p;
  }

  /** Claims as many sagas as there is room for and starts them; resolves with how many. */
  private async pump(): Promise<number> {
    const room = this.options.batchSize - this.inFlight.size;
    if (room <= 0) return 0;
    const rows = await this.claim(room);
    for (const r of rows) void this.launch(r);
    return rows.length;
  }

  private async runLoop(): Promise<void> {
    while (this.running) {
      let claimed = 0;
      try {
        claimed = await this.pump();
      } catch (err) {
        this.options.logger.warn({ err }, "claiming sagas failed");
      }
      if (!this.running) break;
      if ((claimed > 0 || this.kicked) && this.inFlight.size < this.options.batchSize) {
        this.kicked = false;
        continue;
      }
      await this.sleep();
    }
  }

  /** Until the next poll, or a kick or a finished saga wakes the loop. */
  private sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.options.pollMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      this.wake = undefined;
    });
  }
}

export { startSaga };

const carrierGetter = {
  keys: (c: Record<string, string>) => Object.keys(c),
  get: (c: Record<string, string>, k: string) => c[k],
};

/** The trace context a saga was started in (its row's `traceparent`), or none. */
function sagaContext(row: SagaRow): Context {
  if (!row.traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, { traceparent: row.traceparent }, carrierGetter);
}
