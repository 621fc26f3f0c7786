#!/usr/bin/env node
/**
 * What one consumer transaction costs per event by batch size: the consumer's batch application
 * (`createBatchApplier` of @meshwork/events: one multi-row inbox insert, the benchmark's batch
 * handler writing one effect row per event, one commit) run on a fresh events fixture, in
 * alternated rounds per size, with this process's CPU (`process.cpuUsage`, load-proof) and the
 * CPU of the database's Postgres backends (/proc, 10 ms ticks) per event; medians.
 *
 *   cd tools/bench && npm run build && node scripts/events-batch-cost.mjs [sizes=16,64,256] [rounds=6]
 *
 * It tells what a consumer that keeps pace with its relay (small batches) pays per event against
 * one that is behind (full batches): see `describeBatches` in src/events-stats.ts.
 */
import { readFileSync } from "node:fs";
import { queryRows } from "@meshwork/db";
import { createEventsFixture, effects, inbox } from "@meshwork/events/testing";
import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { sql } from "drizzle-orm";
import { createBatchApplier } from "../../../libs/events/dist/consumer/apply-batch.js";
import { Delivery } from "../../../libs/events/dist/consumer/delivery.js";

const sizes = (process.argv[2] ?? "16,64,256").split(",").map(Number);
const rounds = Number(process.argv[3] ?? 6);
const EVENTS_PER_ROUND = 10_240;

const f = await createEventsFixture({});
const handler = {
  // The events benchmark's handler (events-consumer.ts): one effect row per event, one statement.
  async batch(items, tx) {
    await tx
      .insert(effects)
      .select(sql`select unnest(${sql.param(items.map((it) => it.event.id))}::text[]), 1`);
  },
};
const apply = createBatchApplier({ database: f.database, inbox, durable: "cost" });
const span = trace.wrapSpanContext({
  traceId: `${"0".repeat(31)}1`,
  spanId: `${"0".repeat(15)}1`,
  traceFlags: 1,
});
let seq = 0;
const delivery = () => {
  const id = `${String(seq++).padStart(8, "0")}-0000-7000-8000-000000000000`;
  const now = new Date();
  const event = { id, type: "t", source: "s", time: now, subject: "x", deliveryCount: 1, publishTime: now };
  return new Delivery({}, span, ROOT_CONTEXT, handler, {}, event);
};

/** CPU ticks (10 ms) of the Postgres backends serving the fixture's database. */
async function backendTicks() {
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
      // gone, or another machine's server: counted as nothing
    }
  }
  return ticks;
}

async function round(size) {
  const batches = Array.from({ length: Math.ceil(EVENTS_PER_ROUND / size) }, () =>
    Array.from({ length: size }, delivery),
  );
  const events = batches.length * size;
  const pg0 = await backendTicks();
  const cpu0 = process.cpuUsage();
  for (const batch of batches) {
    await apply(batch);
    for (const d of batch) if (d.state.kind !== "applied") throw new Error(`not applied: ${d.state.kind}`);
  }
  const cpu = process.cpuUsage(cpu0);
  const pg = (await backendTicks()) - pg0;
  return { js: (cpu.user + cpu.system) / events, pg: (pg * 10_000) / events };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = new Map(sizes.map((s) => [s, { js: [], pg: [] }]));
try {
  for (const s of sizes) await round(s); // warm-up
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...sizes].reverse() : sizes;
    for (const s of order) {
      const { js, pg } = await round(s);
      results.get(s).js.push(js);
      results.get(s).pg.push(pg);
    }
  }
  for (const [s, { js, pg }] of results) {
    console.log(
      `batch ${String(s).padStart(4)}: this process ${median(js).toFixed(1)} us/event, Postgres backends ${median(pg).toFixed(1)} us/event (medians of ${rounds})`,
    );
  }
} finally {
  await f.close();
}
