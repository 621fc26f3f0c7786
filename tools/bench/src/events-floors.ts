/**
 * The floors under the events pipeline (issue 24, goal 4): what NATS and Postgres spend per event
 * on the work the pipeline cannot skip, measured with bare clients and no Meshwork code, so the
 * pipeline's figures (`events.ts`) can be read against them. Not part of `npm run bench`:
 * `node dist/events-floors.js` (MESHWORK_BENCH_EVENTS events per phase, default 20000;
 * MESHWORK_BENCH_ROUNDS rounds, default 3, medians reported).
 *
 * - NATS, on a private nats-server (the shared one serves other benchmarks too): async publishes
 *   with `Nats-Msg-Id`, with the relay's header set and with the message id alone; then the
 *   same messages consumed by a pull consumer with one ack per message (AckExplicit, what the
 *   consumer does) and with one ack per 256 (AckAll).
 * - Postgres, on a database of its own: per event, the relay's claim (an `UPDATE ... SET
 *   sent_at` of 256 rows a statement, as now, or a `DELETE` of them), and the consumer's inbox
 *   row plus one effect row (256 a transaction); and the WAL records and bytes per event of each
 *   statement (EXPLAIN's WAL counters on one batch, rolled back: this backend's own WAL, so
 *   the records are exact on a shared server; the bytes include the full-page images written
 *   when a page is first touched after a checkpoint, which other databases' WAL can bring on at
 *   any time, so the images are reported beside them).
 */
import { readFile } from "node:fs/promises";
import { queryRows } from "@meshwork/db";
import { enqueueEvents } from "@meshwork/events";
import { createEventsFixture, type EventsFixture, outbox } from "@meshwork/events/testing";
import { startNatsServer } from "@meshwork/testing";
import { AckPolicy, type JetStreamClient, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, headers, type MsgHdrs } from "@nats-io/transport-node";
import { sql } from "drizzle-orm";
import { cpuTicksSpent, readCpu } from "./servers.js";

const N = Number(process.env.MESHWORK_BENCH_EVENTS ?? 20_000);
const ROUNDS = Number(process.env.MESHWORK_BENCH_ROUNDS ?? 3);
const BATCH = 256;

/** Microseconds of CPU per event that the processes `match` picks spent while `work` ran. */
async function cpuUsPerEvent(match: (pid: number, comm: string) => boolean, work: () => Promise<void>) {
  const groupOf = (pid: number, comm: string) => (match(pid, comm) ? "x" : undefined);
  const before = await readCpu(groupOf);
  await work();
  const spent = cpuTicksSpent(before, await readCpu(groupOf));
  return ((spent.get("x") ?? 0) * 10_000) / N;
}

/** The relay's headers for one event (CloudEvents binding, message id, W3C trace context). */
function relayHeaders(i: number, idOnly: boolean): MsgHdrs {
  const h = headers();
  const id = `0190a5e4-7b1c-7000-8000-${String(i).padStart(12, "0")}`;
  if (!idOnly) {
    h.append("ce-specversion", "1.0");
    h.append("ce-id", id);
    h.append("ce-type", "meshwork.users.v1.UserRegistered");
    h.append("ce-source", "/meshwork/users");
    h.append("ce-time", new Date().toISOString());
    h.append("content-type", "application/protobuf");
  }
  h.append("Nats-Msg-Id", id);
  if (!idOnly) h.append("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  return h;
}

async function publishAll(js: JetStreamClient, subject: string, from: number, idOnly: boolean) {
  const payload = new Uint8Array(72).fill(0x61);
  for (let i = from; i < from + N; i += 1_000) {
    const window = [];
    for (let j = i; j < Math.min(from + N, i + 1_000); j++) {
      window.push(js.publish(subject, payload, { headers: relayHeaders(j, idOnly) }));
    }
    await Promise.all(window);
  }
}

/** Consumes `N` messages of `durable`, acking each (`every` 1) or every 256th and the last. */
async function consumeAll(js: JetStreamClient, stream: string, durable: string, every: number) {
  const consumer = await js.consumers.get(stream, durable);
  let seen = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const messages = await consumer.consume({
    max_messages: BATCH,
    callback: (m) => {
      seen++;
      if (seen % every === 0 || seen === N) m.ack();
      if (seen === N) done();
    },
  });
  await finished;
  await messages.close();
}

async function natsRound(url: string, natsPid: number, round: number): Promise<Record<string, number>> {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const stream = `FLOORS_${round}`;
  await jsm.streams.add({ name: stream, subjects: [`floors${round}.>`], duplicate_window: 120_000_000_000 });
  const isNats = (pid: number) => pid === natsPid;
  const out: Record<string, number> = {};
  out.publishAllHeaders = await cpuUsPerEvent(isNats, () => publishAll(js, `floors${round}.a`, 0, false));
  out.publishIdOnly = await cpuUsPerEvent(isNats, () => publishAll(js, `floors${round}.b`, N, true));
  for (const [durable, policy] of [
    ["explicit", AckPolicy.Explicit],
    ["all", AckPolicy.All],
  ] as const) {
    await jsm.consumers.add(stream, {
      durable_name: durable,
      ack_policy: policy,
      filter_subject: `floors${round}.a`,
      max_ack_pending: 1_000,
    });
  }
  out.consumeAckEach = await cpuUsPerEvent(isNats, () => consumeAll(js, stream, "explicit", 1));
  out.consumeAckAll256 = await cpuUsPerEvent(isNats, () => consumeAll(js, stream, "all", BATCH));
  await jsm.streams.delete(stream);
  await nc.close();
  return out;
}

/** The pid of the nats-server listening on `port` (its command line names the port). */
async function natsServerPid(port: number): Promise<number> {
  const pids: number[] = [];
  await readCpu((pid, comm) => {
    if (comm === "nats-server") pids.push(pid);
    return undefined;
  });
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.split("\0").includes(String(port))) return pid;
  }
  throw new Error(`no nats-server process listens on ${port}`);
}

/** Commits `n` outbox rows (not measured), 256 a transaction. */
async function fillOutbox(f: EventsFixture, from: number, n = N): Promise<void> {
  for (let i = from; i < from + n; i += BATCH) {
    const events = Array.from({ length: Math.min(BATCH, from + n - i) }, (_, k) => f.event(i + k));
    await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, events));
  }
}

async function postgresRound(f: EventsFixture, round: number): Promise<Record<string, number>> {
  const db = f.database.db;
  const backends = new Set(
    (
      await queryRows<{ pid: number }>(
        db,
        sql`select pid from pg_stat_activity where datname = current_database()`,
      )
    ).map((r) => Number(r.pid)),
  );
  const isBackend = (pid: number, comm: string) => comm === "postgres" && backends.has(pid);
  const claimEach = (statement: ReturnType<typeof sql>) => async () => {
    for (let left = N; left > 0; left -= BATCH) {
      await db.transaction(async (tx) => {
        await tx.execute(sql`set local synchronous_commit = off`);
        await tx.execute(statement);
      });
    }
  };
  const unsent = sql`select seq from outbox where sent_at is null order by seq limit ${BATCH} for update skip locked`;
  const out: Record<string, number> = {};
  await fillOutbox(f, round * 3 * N);
  out.claimUpdate = await cpuUsPerEvent(
    isBackend,
    claimEach(
      sql`update outbox set sent_at = now() where seq = any(array(${unsent})) returning id, headers, payload`,
    ),
  );
  await fillOutbox(f, (round * 3 + 1) * N);
  out.claimDelete = await cpuUsPerEvent(
    isBackend,
    claimEach(sql`delete from outbox where seq = any(array(${unsent})) returning id, headers, payload`),
  );
  await db.execute(sql`delete from outbox`);
  out.inboxAndEffect = await cpuUsPerEvent(isBackend, async () => {
    for (let i = 0; i < N; i += BATCH) {
      const ids = Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => `r${round}-${i + k}`);
      await db.transaction(async (tx) => {
        await tx.execute(
          sql`insert into inbox (consumer, event_id, processed_at) select 'c', unnest(${sql.param(ids)}::text[]), now() on conflict do nothing returning event_id`,
        );
        await tx.execute(
          sql`insert into effects (event_id, value) select unnest(${sql.param(ids)}::text[]), 1`,
        );
      });
    }
  });
  return out;
}

/** WAL records and bytes per event of one batch of `statement` (EXPLAIN's WAL counters; rolled back). */
async function walPerEvent(f: EventsFixture, statement: ReturnType<typeof sql>, events: number) {
  type Plan = { Plan: { "WAL Records": number; "WAL Bytes": number; "WAL FPI": number } };
  let plan: Plan["Plan"] | undefined;
  await f.database.db
    .transaction(async (tx) => {
      const [row] = await queryRows<{ "QUERY PLAN": Plan[] }>(
        tx,
        sql`explain (analyze, wal, format json) ${statement}`,
      );
      plan = row?.["QUERY PLAN"][0]?.Plan;
      tx.rollback();
    })
    .catch(() => {}); // the rollback
  return {
    records: (plan?.["WAL Records"] ?? 0) / events,
    bytes: Math.round((plan?.["WAL Bytes"] ?? 0) / events),
    /** Full-page images in the batch (not per event): non-zero when a checkpoint just passed. */
    fullPageImages: plan?.["WAL FPI"] ?? 0,
  };
}

/** The WAL each statement of the pipeline writes per event, for a batch of 256. */
async function walFigures(
  f: EventsFixture,
): Promise<Record<string, { records: number; bytes: number; fullPageImages: number }>> {
  await fillOutbox(f, 10_000_000, BATCH);
  const unsent = sql`select seq from outbox where sent_at is null order by seq limit ${BATCH} for update skip locked`;
  const ids = sql.param(Array.from({ length: BATCH }, (_, k) => `wal-${k}`));
  return {
    claimUpdate: await walPerEvent(
      f,
      sql`update outbox set sent_at = now() where seq = any(array(${unsent}))`,
      BATCH,
    ),
    claimDelete: await walPerEvent(f, sql`delete from outbox where seq = any(array(${unsent}))`, BATCH),
    inbox: await walPerEvent(
      f,
      sql`insert into inbox (consumer, event_id, processed_at) select 'c', unnest(${ids}::text[]), now()`,
      BATCH,
    ),
    effect: await walPerEvent(
      f,
      sql`insert into effects (event_id, value) select unnest(${ids}::text[]), 1`,
      BATCH,
    ),
  };
}

function medians(rounds: Record<string, number>[]): Record<string, number> {
  const keys = Object.keys(rounds[0] ?? {});
  return Object.fromEntries(
    keys.map((k) => {
      const xs = rounds.map((r) => r[k] as number).sort((a, b) => a - b);
      return [k, Math.round(xs[Math.floor(xs.length / 2)] as number)];
    }),
  );
}

async function main(): Promise<void> {
  const nats = await startNatsServer();
  const f = await createEventsFixture({ streams: false });
  try {
    const natsPid = await natsServerPid(nats.port);
    const natsRounds: Record<string, number>[] = [];
    const pgRounds: Record<string, number>[] = [];
    const wal = await walFigures(f);
    await f.database.db.execute(sql`delete from outbox`);
    for (let r = 0; r < ROUNDS; r++) {
      natsRounds.push(await natsRound(nats.url, natsPid, r));
      pgRounds.push(await postgresRound(f, r));
    }
    process.stdout.write(
      `== events floors: CPU us per event, medians of ${ROUNDS} rounds of ${N} ==\n` +
        `nats-server  ${JSON.stringify(medians(natsRounds))}\n` +
        `postgres     ${JSON.stringify(medians(pgRounds))}\n` +
        `WAL per event (one batch of ${BATCH})  ${JSON.stringify(wal)}\n` +
        `rounds       ${JSON.stringify({ nats: natsRounds, postgres: pgRounds })}\n`,
    );
  } finally {
    await f.close();
    await nats.remove();
  }
}

await main();
