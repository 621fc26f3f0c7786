/**
 * The consuming side of the events benchmark, as its own process: in the mesh the relay runs in
 * the producing service and the consumer in another service, so the two never share an event
 * loop. Started by `events.ts` over IPC with the names of its fixture (`MESHWORK_BENCH_EVENTS_*`);
 * applies each event (an inbox row and an effect row, a batch handler, one transaction per batch)
 * and reports the ids it applied with the wall-clock time, so the parent can measure
 * commit-to-effect lag across processes.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { openDatabase } from "@meshwork/db";
import { connectNats, createEventConsumer } from "@meshwork/events";
import { effects, inbox, registry, schema } from "@meshwork/events/testing";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { jetstream } from "@nats-io/jetstream";
import { sql } from "drizzle-orm";

/** What the child tells its parent. */
export type ConsumerReport =
  | { kind: "ready" }
  /** The answer to a {@link ProfileCommand}: profiling started, or its profile was written. */
  | { kind: "profiling" }
  | { kind: "profiled" }
  /**
   * Events applied by one batch handler call, at `at` (ms since the epoch),
   * with the time the broker stored each (`published`, ms since the epoch).
   */
  | { kind: "applied"; ids: string[]; published: number[]; at: number };

/**
 * What the parent tells the child: start a CPU profile of this process, or stop it and write it
 * to `file` (so the profile covers the pipeline phase alone, as the parent's does).
 */
export type ProfileCommand = { kind: "profile-start" } | { kind: "profile-stop"; file: string };

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (this process is started by events.js)`);
  return value;
}

const send = (report: ConsumerReport) => process.send?.(report);
const wallClock = () => Date.now(); // the clock of the parent's commit times and of the broker

const database = await openDatabase(
  {
    url: required("MESHWORK_BENCH_EVENTS_DB"),
    dataDir: "",
    pool: { max: 5, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 },
  },
  schema,
);
const nc = await connectNats(required("MESHWORK_BENCH_EVENTS_NATS"), "bench-events-consumer");
const logger = createLogger({ service: "bench-events-consumer", level: "warn" });
const telemetry = createTelemetry({ serviceName: "bench-events-consumer" });
const consumer = createEventConsumer({
  js: jetstream(nc),
  database,
  inbox,
  stream: required("MESHWORK_BENCH_EVENTS_STREAM"),
  durable: required("MESHWORK_BENCH_EVENTS_DURABLE"),
  handlers: {
    // A batch handler: one insert per run of events, as a consumer whose effect is a row per
    // event would be written, and as the consumer writes its own inbox rows: the events' ids as
    // one array parameter, so the statement has one shape (prepared once) whatever the batch's
    // size. (`.values(items.map(...))` built a statement of two parameters per row, a new shape
    // for each batch size: 10-12% of this process's profile went to building it.) The effect's
    // time is taken when its statement is done (the batch's commit follows), as the in-process
    // version of this benchmark did.
    "meshwork.users.v1.UserRegistered": {
      async batch(items, tx) {
        await tx
          .insert(effects)
          .select(sql`select unnest(${sql.param(items.map((it) => it.event.id))}::text[]), 1`);
        send({
          kind: "applied",
          ids: items.map((it) => it.event.id),
          published: items.map((it) => it.event.publishTime.getTime()),
          at: wallClock(),
        });
      },
    },
  },
  registry,
  maxDeliver: 5,
  backoffMs: 100,
  deadLetterSubject: required("MESHWORK_BENCH_EVENTS_DLQ_SUBJECT"),
  logger,
  tracer: telemetry.tracer,
  meter: telemetry.meter,
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await consumer.stop();
  await nc.close();
  await database.close();
  await telemetry.shutdown();
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.on("disconnect", () => void stop());

let profiler: Session | undefined;
process.on("message", (command: ProfileCommand) => {
  void (async () => {
    if (command.kind === "profile-start") {
      profiler = new Session();
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.start");
      send({ kind: "profiling" });
    } else if (profiler) {
      const { profile } = await profiler.post("Profiler.stop");
      writeFileSync(command.file, JSON.stringify(profile));
      profiler.disconnect();
      profiler = undefined;
      send({ kind: "profiled" });
    }
  })();
});

await consumer.start();
send({ kind: "ready" });
