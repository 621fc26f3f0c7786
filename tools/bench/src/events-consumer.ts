/**
 * The consuming side of the events benchmark, as its own process: in the mesh the relay runs in
 * the producing service and the consumer in another service, so the two never share an event
 * loop. Started by `events.ts` over IPC with the names of its fixture (`MESHWORK_BENCH_EVENTS_*`);
 * applies each event (an inbox row and an effect row, a batch handler, one transaction per batch)
 * and reports the ids it applied with the wall-clock time, so the parent can measure
 * commit-to-effect lag across processes.
 */
import { openDatabase } from "@meshwork/db";
import { connectNats, createEventConsumer, eventsEnvShape } from "@meshwork/events";
import { effects, inbox, registry, schema } from "@meshwork/events/testing";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { jetstream } from "@nats-io/jetstream";
import { sql } from "drizzle-orm";
import {
  createChildProfiler,
  isProfileCommand,
  type ProfileAnswer,
  type ProfileCommand,
  required,
} from "./events-child.js";

/** What the child tells its parent. */
export type ConsumerReport =
  | { kind: "ready" }
  | ProfileAnswer
  /**
   * Events applied by one batch handler call, at `at` (ms since the epoch),
   * with the time the broker stored each (`published`, ms since the epoch).
   */
  | { kind: "applied"; ids: string[]; published: number[]; at: number };

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
  // CONSUMER_LINGER_MS as a service reads it (unset or empty: the default), for A/B runs in one build.
  lingerMs: eventsEnvShape().CONSUMER_LINGER_MS.parse(process.env.CONSUMER_LINGER_MS || undefined),
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

const profile = createChildProfiler(send);
process.on("message", (command: ProfileCommand) => {
  if (isProfileCommand(command)) profile(command);
});

await consumer.start();
send({ kind: "ready" });
