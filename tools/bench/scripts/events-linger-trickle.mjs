#!/usr/bin/env node
/**
 * The consumer's linger (`CONSUMER_LINGER_MS`) against none, with events trickling in at a fixed
 * rate below the consumer's max (where a consumer that keeps pace takes small batches): per
 * round a fresh events fixture (database, stream, durable), a publisher child process publishing
 * `rate` events/s as the relay would, and `createEventConsumer` in this process with the
 * benchmark's batch handler. Reports, per linger, medians over the rounds (alternated) of this
 * process's CPU per event (`process.cpuUsage`: the consumer, with its idle work over the round),
 * the Postgres backends' CPU per event (/proc, 10 ms ticks), events per transaction and their
 * distribution, and the lag from the broker storing an event to its batch handler's end.
 *
 *   cd tools/bench && npm run build && node scripts/events-linger-trickle.mjs [rate=1000] [seconds=6] [rounds=4] [lingers=0,5]
 */
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { queryRows } from "@meshwork/db";
import { cloudEventHeaders, connectNats, createEventConsumer } from "@meshwork/events";
import { createEventsFixture, effects, inbox, registry } from "@meshwork/events/testing";
import { jetstream } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { sql } from "drizzle-orm";

if (process.argv[2] === "publish") {
  // The child: publishes what its parent sends, paced, then reports.
  const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "linger-trickle-publisher");
  const js = jetstream(nc);
  process.send({ kind: "ready" });
  process.once("message", async ({ rate, events }) => {
    const start = performance.now();
    const inflight = [];
    for (let i = 0; i < events.length; i++) {
      const wait = start + (i * 1000) / rate - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const e = events[i];
      const h = natsHeaders();
      for (const [k, v] of Object.entries(e.headers)) h.set(k, v);
      inflight.push(js.publish(e.subject, Buffer.from(e.data, "base64"), { msgID: e.id, headers: h }));
      if (inflight.length >= 64) await Promise.all(inflight.splice(0));
    }
    await Promise.all(inflight);
    await nc.close();
    process.send({ kind: "published" });
    process.disconnect();
  });
} else {
  await main();
}

async function main() {
  const rate = Number(process.argv[2] ?? 1000);
  const seconds = Number(process.argv[3] ?? 6);
  const rounds = Number(process.argv[4] ?? 4);
  const lingers = (process.argv[5] ?? "0,5").split(",").map(Number);
  const results = new Map(lingers.map((l) => [l, []]));
  await round(lingers[0], rate, 1); // warm-up (JIT), not counted
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...lingers].reverse() : lingers;
    for (const l of order) {
      const res = await round(l, rate, seconds);
      results.get(l).push(res);
      console.log(`round ${r + 1} linger ${l}: ${JSON.stringify(res)}`);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [l, rs] of results) {
    const m = (k) => median(rs.map((x) => x[k]));
    console.log(
      `linger ${l} ms @ ${rate}/s: consumer ${m("consumerUs")} us/event, Postgres backends ${m("postgresUs")} us/event, ` +
        `${m("eventsPerBatch")} events/transaction, lag p50 ${m("lagP50Ms")} ms p99 ${m("lagP99Ms")} ms (medians of ${rs.length}); ` +
        `transactions by events in them, all rounds ${JSON.stringify(sumHistograms(rs.map((x) => x.sizes)))}`,
    );
  }
}

/** One fixture, one consumer with `lingerMs`, `rate * seconds` events trickled in. */
async function round(lingerMs, rate, seconds) {
  const durable = "linger";
  const f = await createEventsFixture({ durables: [durable] });
  const total = Math.round(rate * seconds);
  const batches = [];
  const lags = [];
  let applied = 0;
  let allApplied;
  const done = new Promise((resolve) => {
    allApplied = resolve;
  });
  const consumer = createEventConsumer({
    js: f.js,
    database: f.database,
    inbox,
    stream: f.stream,
    durable,
    handlers: {
      "meshwork.users.v1.UserRegistered": {
        // The events benchmark's handler (events-consumer.ts): one effect row per event.
        async batch(items, tx) {
          await tx
            .insert(effects)
            .select(sql`select unnest(${sql.param(items.map((it) => it.event.id))}::text[]), 1`);
          const now = Date.now();
          for (const it of items) lags.push(now - it.event.publishTime.getTime());
          batches.push(items.length);
          applied += items.length;
          if (applied >= total) allApplied();
        },
      },
    },
    registry,
    maxDeliver: 5,
    backoffMs: 100,
    lingerMs,
    deadLetterSubject: f.dlqSubject,
    logger: f.logger,
    tracer: f.telemetry.tracer,
    meter: f.telemetry.meter,
  });
  try {
    await consumer.start();
    const events = Array.from({ length: total }, (_, n) => {
      const e = f.event(n);
      return {
        subject: e.subject,
        id: e.id,
        data: Buffer.from(e.data).toString("base64"),
        headers: cloudEventHeaders(e),
      };
    });
    const child = fork(new URL(import.meta.url), ["publish"], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    await new Promise((resolve) => child.once("message", resolve)); // connected
    const pg0 = await backendTicks(f);
    const cpu0 = process.cpuUsage();
    child.send({ rate, events });
    await done;
    const cpu = process.cpuUsage(cpu0);
    const pg = (await backendTicks(f)) - pg0;
    await exited;
    lags.sort((a, b) => a - b);
    return {
      consumerUs: Math.round((cpu.user + cpu.system) / total),
      postgresUs: Math.round((pg * 10_000) / total),
      eventsPerBatch: Number((total / batches.length).toFixed(1)),
      lagP50Ms: lags[Math.floor(lags.length * 0.5)],
      lagP99Ms: lags[Math.floor(lags.length * 0.99)],
      sizes: histogram(batches),
    };
  } finally {
    await consumer.stop();
    await f.close();
  }
}

/** The histograms of {@link histogram} added up, smallest batches first. */
function sumHistograms(hs) {
  const sum = {};
  for (const h of hs) for (const [k, n] of Object.entries(h)) sum[k] = (sum[k] ?? 0) + n;
  return Object.fromEntries(
    Object.entries(sum).sort(([a], [b]) => Number.parseInt(a, 10) - Number.parseInt(b, 10)),
  );
}

/** Transactions by events in them: 1, 2-3, 4-7, ... (powers of two). */
function histogram(sizes) {
  const h = {};
  for (const s of sizes) {
    const lo = 2 ** Math.floor(Math.log2(s));
    const key = lo === 1 ? "1" : `${lo}-${2 * lo - 1}`;
    h[key] = (h[key] ?? 0) + 1;
  }
  return h;
}

/** CPU ticks (10 ms) of the Postgres backends serving the fixture's database. */
async function backendTicks(f) {
  const rows = await queryRows(
    f.database.db,
    sql`select pid from pg_stat_activity where datname = current_database()`,
  );
  let ticks = 0;
  for (const { pid } of rows) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone: counted as nothing
    }
  }
  return ticks;
}
