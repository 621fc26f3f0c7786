/**
 * The outbox relay alone, keeping sent rows (marked sent, pruned later) against deleting them as
 * it claims them (`retentionMs` 0), alternated in one run: `node dist/events-relay.js`
 * (MESHWORK_BENCH_EVENTS rows a run, default 20000; MESHWORK_BENCH_ROUNDS, default 3). No
 * consumer: rows/s the relay drains (`drainOnce`, batches of 256) and the CPU per row of its
 * process and of its database's Postgres backends, per run and as medians. A marking relay
 * owes the prune of those rows too (`prune()`, once a minute in its loop): that is measured
 * apart, after the drain (`pruneUs`, Postgres's CPU per row), so the drain figures stay the
 * relay's turn alone. The order of the two relays alternates from round to round.
 */
import { queryRows } from "@meshwork/db";
import { createOutboxRelay, enqueueEvents } from "@meshwork/events";
import { createEventsFixture, type EventsFixture, outbox } from "@meshwork/events/testing";
import { sql } from "drizzle-orm";
import { cpuTicksSpent, readCpu } from "./servers.js";

const N = Number(process.env.MESHWORK_BENCH_EVENTS ?? 20_000);
const ROUNDS = Number(process.env.MESHWORK_BENCH_ROUNDS ?? 3);
const BATCH = 256;

interface Run {
  mode: "mark" | "delete";
  rowsPerSec: number;
  relayUs: number;
  postgresUs: number;
  /** The mark's deferred work: Postgres's CPU per row to prune the rows it marked (0: delete). */
  pruneUs: number;
}

async function drainRun(f: EventsFixture, from: number, retentionMs: number): Promise<Run> {
  for (let i = 0; i < N; i += BATCH) {
    const events = Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => f.event(from + i + k));
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, events));
  }
  const relay = createOutboxRelay({
    database: f.database,
    table: outbox,
    js: f.js,
    logger: f.logger,
    tracer: f.telemetry.tracer,
    meter: f.telemetry.meter,
    batchSize: BATCH,
    pollMs: 1_000,
    retentionMs,
  });
  const pids = await queryRows<{ pid: number }>(
    f.database.db,
    sql`select pid from pg_stat_activity where datname = current_database()`,
  );
  const backends = new Set(pids.map((r) => Number(r.pid)));
  const groupOf = (pid: number, comm: string) =>
    pid === process.pid ? "relay" : comm === "postgres" && backends.has(pid) ? "postgres" : undefined;
  const before = await readCpu(groupOf);
  const began = performance.now();
  for (let sent = 0; sent < N; ) sent += await relay.drainOnce();
  const seconds = (performance.now() - began) / 1000;
  const spent = cpuTicksSpent(before, await readCpu(groupOf));
  // What the loop's prune (`pruneSent`) does with these rows once the retention period is over:
  // its statement, with the cutoff at now.
  const beforePrune = await readCpu(groupOf);
  const pruned = await queryRows<{ seq: number }>(
    f.database.db,
    sql`delete from ${outbox} where ${outbox.sentAt} is not null and ${outbox.sentAt} < now() returning ${outbox.seq}`,
  );
  const prune = cpuTicksSpent(beforePrune, await readCpu(groupOf));
  if (pruned.length !== (retentionMs > 0 ? N : 0)) throw new Error(`pruned ${pruned.length} rows of ${N}`);
  await relay.stop();
  await f.database.db.execute(sql`delete from ${outbox}`);
  await f.jsm.streams.purge(f.stream);
  return {
    mode: retentionMs > 0 ? "mark" : "delete",
    rowsPerSec: Math.round(N / seconds),
    relayUs: ((spent.get("relay") ?? 0) * 10_000) / N,
    postgresUs: ((spent.get("postgres") ?? 0) * 10_000) / N,
    pruneUs: ((prune.get("postgres") ?? 0) * 10_000) / N,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

const f = await createEventsFixture();
try {
  const runs: Run[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? [3_600_000, 0] : [0, 3_600_000];
    for (const [k, retentionMs] of order.entries()) {
      runs.push(await drainRun(f, (2 * r + k) * N, retentionMs));
    }
  }
  for (const r of runs) process.stdout.write(`${JSON.stringify(r)}\n`);
  for (const mode of ["mark", "delete"] as const) {
    const of = runs.filter((r) => r.mode === mode);
    process.stdout.write(
      `${mode.padEnd(6)} medians: ${median(of.map((r) => r.rowsPerSec))} rows/s, relay ${median(of.map((r) => r.relayUs))} us/row, Postgres ${median(of.map((r) => r.postgresUs))} us/row, then its prune ${median(of.map((r) => r.pruneUs))} us/row\n`,
    );
  }
} finally {
  await f.close();
}
