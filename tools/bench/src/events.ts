/**
 * `npm run bench` scenario 2: events from outbox commit to consumer effect, against raw
 * JetStream async publishing, measured in the same run on the machine's Postgres and NATS.
 *
 * - raw: `js.publish` of N messages (the same payload), acks awaited in windows of 1000: msgs/s,
 *   the median of three runs after a warm-up.
 * - producers: N events committed one per transaction (as a service's business transactions
 *   would) by C concurrent producers: tx/s, bounded by Postgres' commit (WAL flush) rate.
 * - pipeline: the relay publishes those N committed events and the idempotent consumer applies
 *   them (inbox rows + effect rows, a batch handler, one transaction per batch):
 *   N / (last effect - relay start).
 * - lag: at half the slower of the two, paced, each event's time from commit to effect: p50 / p99.
 */
import { writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { join } from "node:path";
import { createEventConsumer, createOutboxRelay, enqueueEvents } from "@meshwork/events";
import { createEventsFixture, effects, inbox, outbox, registry } from "@meshwork/events/testing";
import { count } from "drizzle-orm";

const N = Number(process.env.MESHWORK_BENCH_EVENTS ?? 5_000);
const PRODUCERS = Number(process.env.MESHWORK_BENCH_EVENT_PRODUCERS ?? 8);
const LAG_SECONDS = Number(process.env.MESHWORK_BENCH_DURATION_S ?? 10);
const DURABLE = "bench";

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const f = await createEventsFixture({ durables: [DURABLE] });
  const committed = new Map<string, number>();
  const applied = new Map<string, number>();
  const relay = createOutboxRelay({
    database: f.database,
    table: outbox,
    js: f.js,
    logger: f.logger,
    tracer: f.telemetry.tracer,
    meter: f.telemetry.meter,
    batchSize: 256,
    pollMs: 1_000,
    retentionMs: 3_600_000,
  });
  const consumer = createEventConsumer({
    js: f.js,
    database: f.database,
    inbox,
    stream: f.stream,
    durable: DURABLE,
    handlers: {
      // A batch handler: one multi-row insert per run of events, as a consumer whose effect is
      // a row per event would be written.
      "meshwork.users.v1.UserRegistered": {
        async batch(items, tx) {
          await tx.insert(effects).values(items.map((it) => ({ eventId: it.event.id, value: 1 })));
          const now = performance.now();
          for (const it of items) applied.set(it.event.id, now);
        },
      },
    },
    registry,
    maxDeliver: 5,
    backoffMs: 100,
    deadLetterSubject: f.dlqSubject,
    logger: f.logger,
    tracer: f.telemetry.tracer,
    meter: f.telemetry.meter,
  });
  try {
    // 1. raw JetStream async publishing (its own subject space, then purged): a warm-up, then
    // the median of three runs, as the first publishes of a fresh connection are slow.
    const sample = f.event(0);
    let rawSeq = 0;
    const rawRun = async (n: number) => {
      const began = performance.now();
      for (let i = 0; i < n; i += 1_000) {
        const window = [];
        for (let j = i; j < Math.min(n, i + 1_000); j++) {
          window.push(
            f.js.publish(`${f.namespace}meshwork.raw.x`, sample.data, { msgID: `raw-${rawSeq++}` }),
          );
        }
        await Promise.all(window);
      }
      return n / ((performance.now() - began) / 1000);
    };
    await rawRun(2_000);
    const rawRuns = [await rawRun(N), await rawRun(N), await rawRun(N)].sort((a, b) => a - b);
    const rawRate = rawRuns[1] as number;
    await f.jsm.streams.purge(f.stream);

    const commitOne = async (n: number) => {
      const e = f.event(n);
      await f.database.db.transaction((tx) => enqueueEvents(tx, outbox, [e]));
      committed.set(e.id, performance.now());
    };

    // 2a. producers alone: N events, one per transaction, PRODUCERS at a time (relay stopped)
    const commitStart = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: PRODUCERS }, async () => {
        while (next < N) await commitOne(next++);
      }),
    );
    const commitRate = N / ((performance.now() - commitStart) / 1000);

    // 2b. the pipeline: relay + consumer drain those N committed events
    // MESHWORK_BENCH_PROFILE_EVENTS=<file>: a CPU profile of this phase alone, written there.
    const profiler = process.env.MESHWORK_BENCH_PROFILE_EVENTS ? new Session() : undefined;
    if (profiler) {
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.start");
    }
    const start = performance.now();
    await relay.start();
    await consumer.start();
    while (applied.size < N) await new Promise((r) => setTimeout(r, 5));
    const meshRate = N / ((Math.max(...applied.values()) - start) / 1000);
    if (profiler) {
      const { profile } = await profiler.post("Profiler.stop");
      writeFileSync(process.env.MESHWORK_BENCH_PROFILE_EVENTS as string, JSON.stringify(profile));
      profiler.disconnect();
    }

    // 3. lag at half of the mesh's rate, paced
    committed.clear();
    applied.clear();
    const rate = Math.min(meshRate, commitRate) / 2;
    const total = Math.round(rate * LAG_SECONDS);
    const paceStart = performance.now();
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = paceStart + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      inflight.push(commitOne(N + i));
      if (inflight.length >= 64) await Promise.all(inflight.splice(0));
    }
    await Promise.all(inflight);
    while (applied.size < total) await new Promise((r) => setTimeout(r, 5));
    const lags = [...committed].map(([id, t]) => (applied.get(id) ?? Number.NaN) - t).sort((a, b) => a - b);
    const achieved = total / ((performance.now() - paceStart) / 1000);
    const [effectsRow] = await f.database.db.select({ n: count() }).from(effects);

    const result = {
      scenario: "events: outbox commit -> consumer effect",
      events: N,
      producers: PRODUCERS,
      rawPublishPerSec: Math.round(rawRate),
      commitPerSec: Math.round(commitRate),
      meshPerSec: Math.round(meshRate),
      ratioVsRaw: Number((meshRate / rawRate).toFixed(3)),
      lagAtRatePerSec: Math.round(rate),
      lagAchievedPerSec: Math.round(achieved),
      lagP50Ms: Number(percentile(lags, 50).toFixed(2)),
      lagP99Ms: Number(percentile(lags, 99).toFixed(2)),
      effectsApplied: effectsRow?.n,
    };
    const lines = [
      `== ${result.scenario} ==`,
      `raw JetStream async publish   ${result.rawPublishPerSec} msg/s`,
      `outbox -> relay -> effect     ${result.meshPerSec} events/s   (${result.ratioVsRaw}x raw; goal >= 0.5x)`,
      `producers commit              ${result.commitPerSec} tx/s (${PRODUCERS} producers, one event per transaction)`,
      `lag at ${result.lagAtRatePerSec}/s (achieved ${result.lagAchievedPerSec}/s, ${LAG_SECONDS}s)  p50 ${result.lagP50Ms} ms  p99 ${result.lagP99Ms} ms   (goal p99 <= 50 ms)`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    const out = join(process.env.MESHWORK_BENCH_OUT ?? join(process.cwd(), "../../.bench"));
    await mkdir(out, { recursive: true });
    writeFileSync(join(out, "events.json"), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await consumer.stop();
    await relay.stop();
    await f.close();
  }
}

await main();
