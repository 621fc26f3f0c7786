import { Code, ConnectError } from "@connectrpc/connect";
import type { Attributes, Meter } from "@opentelemetry/api";
import type postgres from "postgres";

/**
 * What a postgres.js pool looks like from outside, gathered for the pool metrics. postgres.js
 * keeps its connection queues private, so the counts come from two places that are exact:
 * - the server's own view (`pg_stat_activity`) of the connections this pool opened, which carry
 *   a unique `application_name`: `active` or `idle in transaction` is in use, `idle` is idle
 *   (postgres.js's LISTEN connection shares the name but is not one of the pool's `max`: its
 *   last statement is a LISTEN, and it is left out);
 * - this process's own count of what waits for a connection: transactions (one holds a
 *   connection from `begin` to commit, so once every connection is held the next one waits) and
 *   single statements outside a transaction (postgres.js pipelines them onto busy connections,
 *   but queues them while every connection is held by a transaction).
 */
export interface PoolProbe {
  /** Unique per pool and process; set as the connections' `application_name`. */
  readonly applicationName: string;
  readonly max: number;
  /** Transactions whose `begin` waits for a connection. */
  waiting: number;
  /**
   * Single statements issued on the pool and not settled yet (added by {@link countingWaits});
   * those still in postgres.js's queue are waiting, counted when asked ({@link pending}).
   */
  readonly statements: Set<QueuedQuery>;
  /** Transactions and single statements waiting for a connection now. */
  pending(): number;
  /** Transactions and single queries refused since the start: no connection within the wait bound. */
  timeouts: number;
  /** Connections this process opened, by state, as the server sees them (a fresh count each time). */
  connections(): Promise<{ used: number; idle: number }>;
  /** Closes what the probe opened (its one monitoring connection). */
  close(): Promise<void>;
}

let pools = 0;

/** A unique, recognisable `application_name` for a new pool (at most 63 bytes, as Postgres keeps). */
export function poolApplicationName(name: string): string {
  pools += 1;
  return `meshwork-${name}-${process.pid}-${pools}`.slice(0, 63);
}

/**
 * A probe for the pool whose connections carry `applicationName`. The count is read on a
 * connection of its own (opened at the first read, outside the pool): a pool with every
 * connection held is exactly when the numbers matter, and a query on it would wait.
 */
export function createPoolProbe(
  url: string,
  applicationName: string,
  max: number,
  connectTimeoutS: number,
  open: (url: string, options: postgres.Options<Record<string, postgres.PostgresType>>) => postgres.Sql,
): PoolProbe {
  let monitor: postgres.Sql | undefined;
  return {
    applicationName,
    max,
    waiting: 0,
    statements: new Set(),
    timeouts: 0,
    pending() {
      let queued = 0;
      for (const q of this.statements) if (isQueued(q)) queued += 1;
      return this.waiting + queued;
    },
    async connections() {
      monitor ??= open(url, {
        max: 1,
        idle_timeout: 60,
        connect_timeout: connectTimeoutS,
        connection: { application_name: `${applicationName}-monitor` },
        onnotice: () => {},
      });
      const [row] = await monitor<Array<{ used: number; idle: number }>>`
        select count(*) filter (where state <> 'idle')::int as used,
               count(*) filter (where state = 'idle')::int as idle
        from pg_stat_activity
        where application_name = ${applicationName} and query !~* '^\\s*(un)?listen\\s'`;
      return { used: row?.used ?? 0, idle: row?.idle ?? 0 };
    },
    async close() {
      await monitor?.end({ timeout: 1 });
    },
  };
}

/**
 * Why a transaction was refused: the pool gave it no connection within the wait bound, every
 * connection stayed held (a pool too small for the load, or a deadlock: transactions holding
 * connections while they wait for another). It is the `cause` of the UNAVAILABLE ConnectError the
 * caller gets (connect's `instanceof ConnectError` accepts no subclass), so breakers count it and
 * retries go elsewhere, rather than a call hanging until its caller's deadline.
 */
export class PoolWaitTimeoutError extends Error {
  override name = "PoolWaitTimeoutError";
  constructor(
    readonly pool: string,
    readonly waitedMs: number,
    readonly max: number,
  ) {
    super(`database pool ${pool}: no connection free after waiting ${waitedMs} ms (all ${max} in use)`);
  }
}

/** The UNAVAILABLE error of a transaction refused after its wait (cause: {@link PoolWaitTimeoutError}). */
function poolWaitTimeout(pool: string, waitedMs: number, max: number): ConnectError {
  const cause = new PoolWaitTimeoutError(pool, waitedMs, max);
  return new ConnectError(cause.message, Code.Unavailable, undefined, undefined, cause);
}

/** How {@link countingWaits} bounds and reports the wait for a connection. */
export interface PoolWaitOptions {
  /** The pool's name in errors and logs (the database's name). */
  poolName: string;
  /** Longest wait of a transaction or a single statement for a connection (ms); 0 waits forever. */
  waitTimeoutMs: number;
  /**
   * Told once per episode: when a first transaction is refused (`exhausted`, with the wait), and
   * when a transaction gets a connection again (`recovered`, with how many were refused).
   */
  onEpisode?: (event: "exhausted" | "recovered", detail: Record<string, unknown>) => void;
}

/** What a queued postgres.js query shows of its state (postgres.js 3.4 internals, pinned by pool-wait.int.test.ts). */
export interface QueuedQuery {
  /** Null until postgres.js wrote the query to a connection (then its backend's key). */
  state?: unknown;
  /** Set once the query was handed to the pool (postgres.js queries start when awaited). */
  executed?: boolean;
  /** Settles the query's promise with an error. */
  reject(err: unknown): void;
  /** postgres.js's public `query.cancel()`: a query still in the pool's queue leaves it, rejected. */
  cancel(): unknown;
}

/** Whether a statement waits in postgres.js's queue: handed to the pool, not yet on a connection. */
function isQueued(q: QueuedQuery): boolean {
  return !q.state && q.executed === true;
}

/** One pool's refusals: counted on the probe, said once per episode (see {@link PoolWaitOptions}). */
function refusals(probe: PoolProbe, wait: PoolWaitOptions) {
  let refused = 0; // in the current episode
  return {
    refuse(): ConnectError {
      probe.timeouts += 1;
      refused += 1;
      if (refused === 1)
        wait.onEpisode?.("exhausted", {
          pool: wait.poolName,
          waitTimeoutMs: wait.waitTimeoutMs,
          max: probe.max,
        });
      return poolWaitTimeout(wait.poolName, wait.waitTimeoutMs, probe.max);
    },
    served(startedAt: number): void {
      if (refused === 0) return;
      wait.onEpisode?.("recovered", {
        pool: wait.poolName,
        refused,
        waitedMs: Math.round(performance.now() - startedAt),
      });
      refused = 0;
    },
  };
}

/**
 * Counts a single statement on the pool (outside a transaction) in `probe.statements` until it
 * settles, and, with a bound, bounds its wait for a connection: postgres.js pipelines it onto a
 * busy connection when it can, but when every connection is held by a transaction it queues it,
 * unbounded. A statement still queued after the bound leaves the queue (`cancel()`) rejected with
 * the UNAVAILABLE error of a refused transaction; one already on a connection (or never awaited)
 * is left alone. A timer per statement: ~0.6-0.9 µs of CPU each (a sweep per pool measured more,
 * its bookkeeping costing what the timers did).
 */
function trackStatement(
  q: QueuedQuery,
  probe: PoolProbe,
  waitTimeoutMs: number | undefined,
  pool: ReturnType<typeof refusals>,
): void {
  const issuedAt = performance.now();
  probe.statements.add(q);
  const timer =
    waitTimeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          if (!isQueued(q)) return;
          const reject = q.reject;
          const err = pool.refuse();
          q.reject = () => reject(err);
          q.cancel();
        }, waitTimeoutMs);
  // Promise's own `then`, not the query's: that one would start a query never awaited.
  Promise.prototype.then.call(
    q,
    () => {
      probe.statements.delete(q);
      clearTimeout(timer);
      if (timer) pool.served(issuedAt);
    },
    () => {
      probe.statements.delete(q);
      clearTimeout(timer);
    },
  );
}

/**
 * Wraps a postgres.js pool so `begin` counts the transactions waiting for a connection on
 * `probe` (from the call until postgres.js hands the transaction its connection), and refuses a
 * transaction that waited longer than `wait.waitTimeoutMs` with UNAVAILABLE ({@link PoolWaitTimeoutError}).
 * postgres.js bounds only the opening of a connection (`connect_timeout`), not the wait in its
 * queue, and a queued `begin` cannot be taken out of that queue: when it gets its connection
 * after all, it rolls back at once, giving the connection back. A single statement outside a
 * transaction (`unsafe`, which Drizzle runs every query through) gets the same bound and the same
 * error: it is taken out of the queue; while queued, it is counted on `probe` as waiting too.
 */
export function countingWaits<T extends postgres.Sql>(sql: T, probe: PoolProbe, wait?: PoolWaitOptions): T {
  type Run = (...args: unknown[]) => Promise<unknown>;
  const bounded = wait && wait.waitTimeoutMs > 0 ? wait : undefined;
  const pool = refusals(probe, wait ?? { poolName: "", waitTimeoutMs: 0 });
  type Unsafe = (...args: unknown[]) => QueuedQuery;
  const unsafe = (...args: unknown[]) => {
    const q = (sql.unsafe as unknown as Unsafe)(...args);
    trackStatement(q, probe, bounded?.waitTimeoutMs, pool);
    return q;
  };
  return new Proxy(sql, {
    get(target, prop, receiver) {
      if (prop === "unsafe") return unsafe;
      if (prop !== "begin") return Reflect.get(target, prop, receiver);
      return boundedBegin(Reflect.get(target, prop, receiver) as Run, target, probe, bounded, pool);
    },
  });
}

/** `begin` counted on `probe` and, with `wait`, bounded (see {@link countingWaits}). */
function boundedBegin(
  begin: (...args: unknown[]) => Promise<unknown>,
  target: postgres.Sql,
  probe: PoolProbe,
  wait: PoolWaitOptions | undefined,
  pool: ReturnType<typeof refusals>,
) {
  return (...args: unknown[]) => {
    const fn = args.pop() as (tx: postgres.TransactionSql) => unknown;
    const startedAt = performance.now();
    probe.waiting += 1;
    let started = false;
    let gaveUp = false;
    const start = () => {
      if (!started) {
        started = true;
        probe.waiting -= 1;
      }
    };
    const run = begin
      .call(target, ...args, (tx: postgres.TransactionSql) => {
        start();
        // Its caller was already told no: roll back, giving the connection back.
        if (gaveUp) throw new Error("transaction abandoned after its wait for a connection");
        if (wait) pool.served(startedAt);
        return fn(tx);
      })
      .finally(start); // a begin that failed before it got a connection waits no more
    if (!wait) return run;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (started) return;
        gaveUp = true;
        start();
        reject(pool.refuse());
      }, wait.waitTimeoutMs);
      run.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err) => {
          clearTimeout(timer);
          if (!gaveUp) reject(err);
        },
      );
    });
  };
}

/**
 * Registers the pool gauges of the OpenTelemetry database-client conventions on `meter`:
 * `db.client.connection.count` by `db.client.connection.state` (`used`, `idle`),
 * `db.client.connection.pending_requests` and `db.client.connection.max`, each with
 * `db.client.connection.pool.name`. The connection counts are read at each collection (one small
 * query on the probe's own connection); when the server does not answer, they are not reported.
 */
export function registerPoolMetrics(meter: Meter, probe: PoolProbe, poolName: string): void {
  const pool: Attributes = { "db.client.connection.pool.name": poolName };
  const used: Attributes = { ...pool, "db.client.connection.state": "used" };
  const idle: Attributes = { ...pool, "db.client.connection.state": "idle" };
  const count = meter.createObservableGauge("db.client.connection.count", {
    description: "Connections of the pool, by state (used: running a statement or in a transaction)",
  });
  const pending = meter.createObservableGauge("db.client.connection.pending_requests", {
    description: "Transactions and single statements waiting for a connection of the pool",
  });
  const max = meter.createObservableGauge("db.client.connection.max", {
    description: "Most connections the pool opens",
  });
  const timeouts = meter.createObservableCounter("db.client.connection.timeouts", {
    description:
      "Transactions and single queries refused (UNAVAILABLE) after waiting the bound for a connection",
  });
  meter.addBatchObservableCallback(
    async (result) => {
      result.observe(pending, probe.pending(), pool);
      result.observe(max, probe.max, pool);
      result.observe(timeouts, probe.timeouts, pool);
      const now = await probe.connections().catch(() => undefined);
      if (now) {
        result.observe(count, now.used, used);
        result.observe(count, now.idle, idle);
      }
    },
    [count, pending, max, timeouts],
  );
}
