import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase, waitFor } from "@meshwork/testing";
import { context, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { and, eq, sql } from "drizzle-orm";
import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ledger, sagas, schema } from "../test/fixtures/schema.js";
import { SagaAbort, type SagaDefinition, SagaUnavailable } from "./definition.js";
import { createSagaExecutor, type SagaExecutor, startSaga } from "./executor.js";
import { createSagaQueries, describeSagaSteps } from "./queries.js";

const migrations = fileURLToPath(new URL("../test/fixtures/drizzle", import.meta.url));
type Data = { label: string };

describe("sagas on the real Postgres", () => {
  let testDb: TestDatabase;
  let database: DatabaseHandle<typeof schema>;
  const telemetry = createTelemetry({ serviceName: "saga-test" });
  const logger = createLogger({ service: "saga-test", level: "silent" });
  const executors: SagaExecutor[] = [];

  beforeAll(async () => {
    testDb = await createTestDatabase("mw_saga");
    database = await openDatabase(
      {
        url: testDb.url,
        dataDir: "",
        pool: { max: 10, idleTimeoutS: 0, maxLifetimeS: 0, connectTimeoutS: 10 },
      },
      schema,
    );
    await database.migrate(migrations);
  });
  afterAll(async () => {
    for (const e of executors) await e.stop();
    await database?.close();
    await testDb?.drop();
  });

  /** Records `entry` for the saga (counting repeats) in `tx` or on its own. */
  const note = async (
    sagaId: string,
    entry: string,
    tx: Pick<typeof database.db, "insert"> = database.db,
  ) => {
    await tx
      .insert(ledger)
      .values({ sagaId, entry })
      .onConflictDoUpdate({
        target: [ledger.sagaId, ledger.entry],
        set: { times: sql`${ledger.times} + 1` },
      });
  };
  const entries = async (sagaId: string) =>
    Object.fromEntries(
      (await database.db.select().from(ledger).where(eq(ledger.sagaId, sagaId))).map((r) => [
        r.entry,
        r.times,
      ]),
    );
  const status = async (id: string) => (await database.db.select().from(sagas).where(eq(sagas.id, id)))[0];

  /** A three-step saga whose behaviour per step comes from `behave`. */
  const definition = (
    type: string,
    behave: Partial<Record<string, (sagaId: string, attempt: number) => Promise<void>>> = {},
    extra: Partial<SagaDefinition<Data>> = {},
  ): SagaDefinition<Data> => ({
    type,
    steps: ["reserve", "authorize", "capture"].map((name) => ({
      name,
      async action({ sagaId, attempt }) {
        await behave[name]?.(sagaId, attempt);
        await note(sagaId, name);
      },
      async compensate({ sagaId, attempt }) {
        await behave[`undo ${name}`]?.(sagaId, attempt);
        await note(sagaId, `undo ${name}`);
      },
    })),
    onStepDone: (tx, id, _d, step) => note(id, `done ${step}`, tx),
    onCompleted: (tx, id) => note(id, "completed", tx),
    onCompensated: async (tx, id, _d, reason, undone) => {
      await note(id, `compensated: ${reason}`, tx);
      for (const step of undone) await note(id, `undid ${step}`, tx);
    },
    maxAttempts: 3,
    initialDelayMs: 10,
    maxDelayMs: 40,
    stepTimeoutMs: 2_000,
    ...extra,
  });

  const executor = (
    defs: SagaDefinition<Data>[],
    extra: {
      leaseMs?: number;
      pollMs?: number;
      owner?: string;
      database?: DatabaseHandle<typeof schema>;
    } = {},
  ) => {
    const e = createSagaExecutor({
      database: extra.database ?? database,
      table: sagas,
      definitions: defs,
      logger,
      tracer: telemetry.tracer,
      meter: telemetry.meter,
      leaseMs: extra.leaseMs ?? 10_000,
      pollMs: extra.pollMs ?? 20,
      batchSize: 16,
      owner: extra.owner,
    });
    executors.push(e);
    return e;
  };
  const start = async (def: SagaDefinition<Data>) => {
    const id = uuidv7();
    await database.db.transaction((tx) => startSaga(tx, sagas, def, { id, data: { label: id } }));
    return id;
  };
  const finished = (id: string) =>
    waitFor(async () => {
      const s = await status(id);
      return s && (s.status === "completed" || s.status === "compensated") ? s : undefined;
    });
  /** One saga of `def`, run to its end on an executor of its own (stopped once it ended). */
  const runToEnd = async (def: SagaDefinition<Data>) => {
    const e = executor([def]);
    await e.start();
    const id = await start(def);
    e.kick();
    try {
      return { id, saga: await finished(id) };
    } finally {
      await e.stop();
    }
  };

  it("runs every step once, in order, recording each in the same transaction as the saga's progress", async () => {
    const { id, saga } = await runToEnd(definition("happy"));
    expect(saga.status).toBe("completed");
    expect(await entries(id)).toEqual({
      reserve: 1,
      "done reserve": 1,
      authorize: 1,
      "done authorize": 1,
      capture: 1,
      "done capture": 1,
      completed: 1,
    });
  });

  it("sends a step's onStepDone and the next step's beforeStep together, in that order, in one transaction", async () => {
    // Per step: whether onStepDone's statement had finished when the next beforeStep was called.
    const doneFinished = new Map<string, boolean>();
    const finishedSteps = new Set<string>();
    const def = definition(
      "pipelined-hooks",
      {},
      {
        onStepDone: async (tx, id, _d, step) => {
          await note(id, `done ${step}`, tx);
          finishedSteps.add(step);
        },
        beforeStep: async (tx, id, _d, step) => {
          const order = ["reserve", "authorize", "capture"];
          const previous = order[order.indexOf(step) - 1];
          if (!previous) return undefined;
          doneFinished.set(step, finishedSteps.has(previous));
          // In order on the connection: the check sees the step recorded as done.
          const [row] = await tx
            .select({ times: ledger.times })
            .from(ledger)
            .where(and(eq(ledger.sagaId, id), eq(ledger.entry, `done ${previous}`)));
          return row?.times === 1 ? undefined : `done ${previous} not seen`;
        },
      },
    );
    const { saga: s } = await runToEnd(def);
    expect(s.failure ?? null).toBeNull();
    expect(s.status).toBe("completed");
    // Without the pipelining, each beforeStep would start only once onStepDone had finished.
    expect(Object.fromEntries(doneFinished)).toEqual({ authorize: false, capture: false });
  });

  it("starts a saga in the caller's transaction and runs it right after the commit, with no claim and no poll", async () => {
    const def = definition(
      "in-place",
      {},
      { beforeStep: async (tx, id, _d, step) => void (await note(id, `check ${step}`, tx)) },
    );
    // Polls once a minute: only the start itself can make the saga run within the test.
    const e = executor([def], { pollMs: 60_000 });
    await e.start();
    const id = uuidv7();
    const run = await database.db.transaction(async (tx) => {
      const go = await e.startIn(tx, def, { id, data: { label: id } });
      const leased = (await tx.select().from(sagas).where(eq(sagas.id, id)))[0];
      expect(leased?.leaseOwner).toBeTruthy(); // no other executor can claim it meanwhile
      expect(await entries(id)).toEqual({}); // the first check is in this uncommitted transaction
      return go;
    });
    expect(await entries(id)).toEqual({ "check reserve": 1 });
    run();
    expect((await finished(id)).status).toBe("completed");
    // The first step's check ran once, in the starting transaction; the others as usual.
    expect(await entries(id)).toMatchObject({
      "check reserve": 1,
      "check authorize": 1,
      "check capture": 1,
      completed: 1,
    });

    // A start whose transaction rolls back leaves nothing behind.
    const gone = uuidv7();
    await expect(
      database.db.transaction(async (tx) => {
        await e.startIn(tx, def, { id: gone, data: { label: gone } });
        throw new Error("the caller's work failed");
      }),
    ).rejects.toThrow("the caller's work failed");
    expect(await status(gone)).toBeUndefined();
    expect(await entries(gone)).toEqual({});
    await e.stop();
  });

  it("skips the first step's check at start when the caller vouches for it, and checks the later steps", async () => {
    const def = definition(
      "in-place-vouched",
      {},
      { beforeStep: async (tx, id, _d, step) => void (await note(id, `check ${step}`, tx)) },
    );
    const e = executor([def], { pollMs: 60_000 });
    await e.start();
    const id = uuidv7();
    const run = await database.db.transaction((tx) =>
      e.startIn(tx, def, { id, data: { label: id } }, { firstStepChecked: true }),
    );
    expect(await entries(id)).toEqual({}); // no statement of the check at start
    run();
    expect((await finished(id)).status).toBe("completed");
    expect(await entries(id)).toMatchObject({ "check authorize": 1, "check capture": 1, completed: 1 });
    expect((await entries(id))["check reserve"]).toBeUndefined();
    await e.stop();
  });

  it("starts a saga unleased when its executor is not running, and a stop reason at start compensates", async () => {
    let refuse = false;
    const def = definition(
      "in-place-refused",
      {},
      { beforeStep: async () => (refuse ? "cancelled by the customer" : undefined) },
    );
    const idle = executor([def]);
    const id = uuidv7();
    const kick = await database.db.transaction((tx) => idle.startIn(tx, def, { id, data: { label: id } }));
    expect((await status(id))?.leaseOwner).toBeNull();
    kick(); // not started: nothing runs, the saga waits for whoever claims it
    await idle.start();
    expect((await finished(id)).status).toBe("completed");
    await idle.stop();

    refuse = true;
    const e = executor([def], { pollMs: 60_000 });
    await e.start();
    const stopped = uuidv7();
    const run = await database.db.transaction((tx) =>
      e.startIn(tx, def, { id: stopped, data: { label: stopped } }),
    );
    run();
    const done = await finished(stopped);
    expect(done.status).toBe("compensated");
    expect(done.failure).toBe("cancelled by the customer");
    // The first step never ran; its compensation (a no-op for a step that did not happen) did.
    expect(await entries(stopped)).toEqual({
      "undo reserve": 1,
      "compensated: cancelled by the customer": 1,
    });
    await e.stop();
  });

  it("compensates the completed steps in reverse on a business failure, without retrying it", async () => {
    const order: string[] = [];
    const def = definition("refused", {
      capture: async () => {
        order.push("capture");
        throw new SagaAbort("payment declined: over the limit");
      },
      "undo authorize": async () => void order.push("undo authorize"),
      "undo reserve": async () => void order.push("undo reserve"),
    });
    const { id, saga: s } = await runToEnd(def);
    expect(s).toMatchObject({ status: "compensated", failure: "payment declined: over the limit" });
    expect(order).toEqual(["capture", "undo authorize", "undo reserve"]);
    const got = await entries(id);
    // The refused step is undone too (idempotently: it may have half happened).
    expect(got["undo capture"]).toBe(1);
    expect(got["compensated: payment declined: over the limit"]).toBe(1);
  });

  it("retries a failing step with backoff, and compensates once its attempts are spent; compensations retry until done", async () => {
    let flaky = 0;
    const recovers = definition("recovers", {
      authorize: async (_id, attempt) => {
        flaky++;
        if (attempt < 3) throw new Error(`payments unavailable (attempt ${attempt})`);
      },
    });
    let undoAttempts = 0;
    const givesUp = definition("gives-up", {
      capture: async () => {
        throw new Error("payments unavailable: circuit breaker open for payments");
      },
      "undo reserve": async () => {
        undoAttempts++;
        if (undoAttempts < 4) throw new Error("inventory unavailable");
      },
    });
    const e = executor([recovers, givesUp]);
    await e.start();
    const a = await start(recovers);
    const b = await start(givesUp);
    expect((await finished(a)).status).toBe("completed");
    expect(flaky).toBe(3);
    const s = await finished(b);
    expect(s).toMatchObject({
      status: "compensated",
      failure: "payments unavailable: circuit breaker open for payments",
    });
    expect(undoAttempts).toBe(4); // beyond maxAttempts: compensations never give up
    expect(await entries(b)).toMatchObject({ "undo authorize": 1, "undo reserve": 1 });
    await e.stop();
  });

  it("stops before a step when beforeStep gives a reason (a cancellation), and compensates", async () => {
    const def = definition(
      "cancelled",
      {},
      {
        beforeStep: async (_tx, _id, _d, step) =>
          step === "capture" ? "cancelled by the customer" : undefined,
      },
    );
    const { id, saga } = await runToEnd(def);
    expect(saga).toMatchObject({ status: "compensated", failure: "cancelled by the customer" });
    const got = await entries(id);
    expect(got.capture).toBeUndefined();
    expect(got).toMatchObject({ "undo capture": 1, "undo authorize": 1, "undo reserve": 1 });
  });

  it("shares the work between executors: each saga runs once", async () => {
    const def = definition("shared");
    const a = executor([def], { owner: "a" });
    const b = executor([def], { owner: "b" });
    const ids = await Promise.all(Array.from({ length: 40 }, () => start(def)));
    await Promise.all([a.start(), b.start()]);
    for (const id of ids) expect((await finished(id)).status).toBe("completed");
    const rows = await database.db
      .select()
      .from(ledger)
      .where(and(eq(ledger.entry, "capture"), sql`${ledger.sagaId} in ${ids}`));
    expect(rows).toHaveLength(40);
    expect(rows.every((r) => r.times === 1)).toBe(true);
    await Promise.all([a.stop(), b.stop()]);
  });

  it("takes over a saga whose executor died once its lease runs out; the dead one records nothing", async () => {
    let hang = true;
    let release: () => void = () => {};
    const def = definition(
      "takeover",
      {
        authorize: async () => {
          if (hang) {
            hang = false;
            await new Promise<void>((r) => {
              release = r;
            }); // the "dying" executor never gets past here (until the end)
          }
        },
      },
      { stepTimeoutMs: 60_000 },
    );
    // The executor that dies has a database connection of its own, closed under it mid-step:
    // its lease heartbeat stops, as a killed process's would.
    const own = await openDatabase(
      {
        url: testDb.url,
        dataDir: "",
        pool: { max: 2, idleTimeoutS: 0, maxLifetimeS: 0, connectTimeoutS: 10 },
      },
      schema,
    );
    const dying = createSagaExecutor({
      database: own,
      table: sagas,
      definitions: [def],
      logger,
      tracer: telemetry.tracer,
      meter: telemetry.meter,
      leaseMs: 300,
      pollMs: 20,
      batchSize: 4,
      owner: "dying",
    });
    const id = await start(def);
    const dyingRun = dying.runOnce();
    await waitFor(async () => (await entries(id))["done reserve"] === 1, { what: "the first step" });
    await own.close();
    const rescuer = executor([def], { owner: "rescuer", leaseMs: 5_000 });
    await rescuer.start();
    expect((await finished(id)).status).toBe("completed");
    // The dead executor's step returns late: it ran (idempotent), but nothing more is recorded.
    release();
    await dyingRun;
    const got = await entries(id);
    expect(got["done authorize"]).toBe(1);
    expect(got.completed).toBe(1);
    expect((await status(id))?.leaseOwner).toBeNull();
    await rescuer.stop();
  });

  it("counts sagas started (once committed), finished by outcome, and their duration; onEnded after the end commits", async () => {
    const server = createServer((req, res) => telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    /** The value of the series `name` whose labels include `labels`, 0 when absent. */
    const value = async (name: string, labels: string[]) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)));
      return line ? Number(line.split(" ").at(-1)) : 0;
    };
    try {
      const ended: string[] = [];
      const onEnded = (id: string, _d: Data, outcome: string, reason?: string) =>
        void ended.push(`${id} ${outcome}${reason ? `: ${reason}` : ""}`);
      const ok = definition("metered-ok", {}, { onEnded });
      const refused = definition(
        "metered-refused",
        {
          authorize: async () => {
            throw new SagaAbort("card declined");
          },
        },
        { onEnded },
      );
      const e = executor([ok, refused], { pollMs: 60_000 });
      await e.start();
      const begin = async (def: SagaDefinition<Data>) => {
        const id = uuidv7();
        const go = await database.db.transaction((tx) => e.startIn(tx, def, { id, data: { label: id } }));
        go();
        return id;
      };
      // A start rolled back is not counted.
      await expect(
        database.db.transaction(async (tx) => {
          await e.startIn(tx, ok, { id: uuidv7(), data: { label: "gone" } });
          throw new Error("rolled back");
        }),
      ).rejects.toThrow("rolled back");
      expect(await value("saga_started_total", ['type="metered-ok"'])).toBe(0);

      const ids = [await begin(ok), await begin(ok), await begin(refused)];
      for (const id of ids) await finished(id);
      // onEnded runs once per saga, after the commit that ended it (the rolled-back one: never).
      await waitFor(() => ended.length === 3);
      expect([...ended].sort()).toEqual(
        [`${ids[0]} completed`, `${ids[1]} completed`, `${ids[2]} compensated: card declined`].sort(),
      );
      expect(await value("saga_started_total", ['type="metered-ok"'])).toBe(2);
      expect(await value("saga_started_total", ['type="metered-refused"'])).toBe(1);
      const ok2 = ['type="metered-ok"', 'outcome="completed"'];
      const comp = ['type="metered-refused"', 'outcome="compensated"'];
      expect(await value("saga_outcomes_total", ok2)).toBe(2);
      expect(await value("saga_outcomes_total", comp)).toBe(1);
      expect(await value("saga_duration_count", ok2)).toBe(2);
      expect(await value("saga_duration_count", comp)).toBe(1);
      expect(await value("saga_duration_sum", ok2)).toBeGreaterThan(0);
      await e.stop();
    } finally {
      server.close();
    }
  });

  it("puts every step and compensation in the trace of the request that started the saga", async () => {
    const exporter = new InMemorySpanExporter();
    const traced = createTelemetry({
      serviceName: "saga-trace",
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const endedIn = new Map<string, string | undefined>();
    const def = definition(
      "traced",
      {
        capture: async () => {
          throw new SagaAbort("payment declined");
        },
      },
      {
        onCompensated: async (_tx, sagaId) => {
          endedIn.set(sagaId, trace.getActiveSpan()?.spanContext().traceId);
        },
      },
    );
    const e = createSagaExecutor({
      database,
      table: sagas,
      definitions: [def],
      logger,
      tracer: traced.tracer,
      meter: traced.meter,
      leaseMs: 10_000,
      pollMs: 20,
      batchSize: 4,
    });
    executors.push(e);
    // Started inside a request's span, as PlaceOrder starts it.
    const request = traced.tracer.startSpan("PlaceOrder");
    const id = await context.with(trace.setSpan(context.active(), request), () => start(def));
    request.end();
    await e.start();
    await finished(id);
    await e.stop();
    const steps = exporter.getFinishedSpans().filter((s) => s.attributes["saga.id"] === id);
    expect(steps.map((s) => s.name)).toEqual([
      "saga traced reserve",
      "saga traced authorize",
      "saga traced capture",
      "saga traced compensate capture",
      "saga traced compensate authorize",
      "saga traced compensate reserve",
    ]);
    for (const s of steps) {
      expect(s.spanContext().traceId).toBe(request.spanContext().traceId);
      expect(s.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
    }
    // Its end too (what onCompensated writes, an event to the outbox, carries this context).
    expect(endedIn.get(id)).toBe(request.spanContext().traceId);
    expect(steps[2]?.status.code).toBe(SpanStatusCode.ERROR);
    await traced.shutdown();
  });

  it("fails a step that outlives its timeout even when it ignores its signal, and never runs one saga twice at once", async () => {
    const hangs = definition(
      "hangs",
      { authorize: () => new Promise<void>(() => {}) }, // never settles, ignores the signal
      { stepTimeoutMs: 100, maxAttempts: 2 },
    );
    let running = 0;
    let most = 0;
    const slow = definition("slow", {
      authorize: async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 400));
        running--;
      },
    });
    // A lease far shorter than the step: the executor must not claim its own saga again.
    const e = executor([hangs, slow], { leaseMs: 100 });
    await e.start();
    const a = await start(hangs);
    const b = await start(slow);
    expect(await finished(a)).toMatchObject({
      status: "compensated",
      failure: "authorize timed out after 100 ms",
    });
    expect((await finished(b)).status).toBe("completed");
    expect(most).toBe(1);
    expect((await entries(b)).authorize).toBe(1);
    await e.stop();
  });

  it("hands a saga back at its last recorded point when stopped", async () => {
    let release: () => void = () => {};
    const def = definition("stopped", {
      authorize: () =>
        new Promise<void>((r) => {
          release = r;
        }),
    });
    const e = executor([def]);
    await e.start();
    const id = await start(def);
    await waitFor(async () => (await entries(id))["done reserve"] === 1, { what: "the first step" });
    const stopping = e.stop();
    release();
    await stopping;
    // authorize finished and was recorded; capture never started; nobody holds the saga.
    expect(await status(id)).toMatchObject({ status: "running", step: 2, leaseOwner: null });
    expect((await entries(id)).capture).toBeUndefined();
    const next = executor([def]);
    await next.start();
    expect((await finished(id)).status).toBe("completed");
    await next.stop();
  });

  it("keeps the lease of a step longer than the lease: another executor does not take it over", async () => {
    let runs = 0;
    // The step lasts more than three leases. The lease itself leaves room for a loaded machine:
    // heartbeats every 200 ms, so a renewal may be up to 400 ms late before b may take over.
    const def = definition(
      "long",
      {
        authorize: async () => {
          runs++;
          await new Promise((r) => setTimeout(r, 2_000));
        },
      },
      { stepTimeoutMs: 10_000 },
    );
    const a = executor([def], { owner: "long-a", leaseMs: 600 });
    const b = executor([def], { owner: "long-b", leaseMs: 600 });
    const id = await start(def);
    await a.start();
    await waitFor(() => runs === 1, { what: "the long step to start" });
    await b.start();
    expect((await finished(id)).status).toBe("completed");
    expect(runs).toBe(1);
    await Promise.all([a.stop(), b.stop()]);
  });
  it("waits out a transient failure longer than its attempts allow, within the budget, and the wait is in the row", async () => {
    let tries = 0;
    const def = definition(
      "transient-recovers",
      {
        authorize: async () => {
          tries++;
          if (tries <= 6)
            throw new SagaUnavailable("payments unavailable: circuit breaker open for payments");
        },
      },
      { transientBudgetMs: 20_000, initialDelayMs: 20, maxDelayMs: 60 },
    );
    // The first executor sees the first failures, then stops while the step waits.
    const first = executor([def]);
    await first.start();
    const id = await start(def);
    await waitFor(async () => ((await status(id))?.transientAttempts ?? 0) >= 2, {
      what: "transient failures",
    });
    await first.stop();
    const waiting = await status(id);
    expect(waiting).toMatchObject({ status: "running", step: 1, leaseOwner: null });
    expect(waiting?.transientSince).toBeInstanceOf(Date);
    expect(waiting?.lastError).toBe("payments unavailable: circuit breaker open for payments");
    // Another executor (a restarted service) goes on from the recorded wait, past maxAttempts (3).
    const next = executor([def]);
    await next.start();
    expect((await finished(id)).status).toBe("completed");
    expect(tries).toBe(7);
    expect(await status(id)).toMatchObject({ transientAttempts: 0, transientSince: null });
    expect(await entries(id)).toMatchObject({ authorize: 1, completed: 1 });
    await next.stop();
  });

  it("compensates once a transient failure outlasts its budget, counted from the step's first transient failure", async () => {
    const tries: number[] = [];
    const def = definition(
      "transient-gives-up",
      {
        capture: async () => {
          tries.push(Date.now());
          throw new SagaUnavailable("payments unavailable: connection refused");
        },
      },
      { transientBudgetMs: 400, initialDelayMs: 10, maxDelayMs: 40 },
    );
    const { id, saga: s } = await runToEnd(def);
    expect(s).toMatchObject({ status: "compensated", failure: "payments unavailable: connection refused" });
    expect(tries.length).toBeGreaterThan(def.maxAttempts);
    // The budget runs from the first failed capture: the last try is at its end, not before. The
    // executor times the budget from the failure it recorded, a few ms after the handler's own
    // first timestamp here (seen: 399 ms at load 30), so allow the difference.
    const spent = (tries.at(-1) ?? 0) - (tries[0] ?? 0);
    expect(spent).toBeGreaterThanOrEqual(380);
    expect(spent).toBeLessThan(5_000);
    expect(await entries(id)).toMatchObject({ "undo capture": 1, "undo authorize": 1, "undo reserve": 1 });
  });

  it("with a budget, a refusal still compensates at once and an ordinary error still spends the attempts", async () => {
    let refusals = 0;
    const refused = definition(
      "budget-refused",
      {
        authorize: async () => {
          refusals++;
          throw new SagaAbort("payment declined");
        },
      },
      { transientBudgetMs: 60_000 },
    );
    let errors = 0;
    const broken = definition(
      "budget-broken",
      {
        authorize: async () => {
          errors++;
          throw new Error("internal error in payments");
        },
      },
      { transientBudgetMs: 60_000 },
    );
    const e = executor([refused, broken]);
    await e.start();
    const a = await start(refused);
    const b = await start(broken);
    expect(await finished(a)).toMatchObject({ status: "compensated", failure: "payment declined" });
    expect(refusals).toBe(1);
    expect(await finished(b)).toMatchObject({ status: "compensated", failure: "internal error in payments" });
    expect(errors).toBe(3);
    await e.stop();
  });

  it("hands onCompensated the steps whose compensation said it undid something", async () => {
    const base = definition("undone", {
      capture: async () => {
        throw new SagaAbort("stock lost");
      },
    });
    // The capture's undo says it undid something (a refund), the authorization's that it did not
    // (nothing to void), the reservation's says nothing.
    const says: Record<string, boolean | undefined> = { capture: true, authorize: false };
    const def: SagaDefinition<Data> = {
      ...base,
      steps: base.steps.map((s) => ({
        ...s,
        async compensate(ctx) {
          await s.compensate?.(ctx);
          return says[s.name];
        },
      })),
    };
    const { id, saga } = await runToEnd(def);
    expect(saga).toMatchObject({ status: "compensated", undone: ["capture"] });
    expect(await entries(id)).toMatchObject({ "compensated: stock lost": 1, "undid capture": 1 });
    expect((await entries(id))["undid authorize"]).toBeUndefined();
  });
  it("keeps each step's history (attempts, errors, waits, compensations) and answers it read-only", async () => {
    let authorizeCalls = 0;
    const def = definition(
      "history",
      {
        // Fails once (retried), then is unavailable once (a transient wait), then refuses.
        authorize: async () => {
          authorizeCalls += 1;
          if (authorizeCalls === 1) throw new Error("connection reset");
          if (authorizeCalls === 2) throw new SagaUnavailable("payments unavailable");
          throw new SagaAbort("payment declined: card expired");
        },
      },
      { transientBudgetMs: 60_000 },
    );
    const e = executor([def]);
    await e.start();
    const id = await start(def);
    const happy = definition("history-happy");
    const other = await start(happy);
    e.kick();
    expect((await finished(id)).status).toBe("compensated");

    const queries = createSagaQueries({ database, table: sagas });
    const row = await queries.get(id);
    if (!row) throw new Error("saga not found");
    expect(row.history.map((h) => `${h.phase} ${h.step} ${h.outcome} #${h.attempt}`)).toEqual([
      "action reserve done #1",
      "action authorize failed #1",
      "action authorize unavailable #2",
      "action authorize refused #3",
      "compensate authorize done #1",
      "compensate reserve done #1",
    ]);
    const failed = row.history[1];
    expect(failed?.error).toBe("connection reset");
    expect(Date.parse(failed?.retryAt ?? "")).toBeGreaterThanOrEqual(Date.parse(failed?.at ?? ""));
    expect(row.history[2]?.error).toBe("payments unavailable");

    const steps = describeSagaSteps(row, ["reserve", "authorize", "capture"]);
    expect(steps.map((s) => [s.name, s.status, s.attempts, s.compensationAttempts])).toEqual([
      ["reserve", "compensated", 1, 1],
      ["authorize", "compensated", 3, 1],
      ["capture", "skipped", 0, 0],
    ]);
    expect(steps[1]?.lastError).toBe("payment declined: card expired");
    expect(steps[0]?.doneAt).toBeInstanceOf(Date);
    expect(steps[0]?.compensatedAt?.getTime()).toBeGreaterThanOrEqual(steps[0]?.doneAt?.getTime() ?? 0);

    // Listed newest first, filtered by status, without the history; paged by id.
    await e.stop();
    const mine = [id, other].sort().reverse();
    const listed = await queries.list({ types: ["history", "history-happy"], limit: 10 });
    expect(listed.map((s) => s.id)).toEqual(mine);
    expect(listed[0]).not.toHaveProperty("history");
    expect(
      (await queries.list({ types: ["history", "history-happy"], statuses: ["compensated"], limit: 10 })).map(
        (s) => s.id,
      ),
    ).toEqual([id]);
    expect(
      (await queries.list({ types: ["history", "history-happy"], beforeId: mine[0], limit: 10 })).map(
        (s) => s.id,
      ),
    ).toEqual([mine[1]]);
    expect(await queries.get(uuidv7())).toBeUndefined();
  });
});
