/**
 * The producing side's relay in the events benchmark, as its own process: in the mesh the relay
 * runs in the producing service, and measured inside the bench's own process it was charged with
 * the bench's bookkeeping (the consumer's reports over IPC, the lag maps): 40-86 µs per row where
 * the relay alone (`events-relay.js`) spends 32-43. Started by `events.ts` over IPC with the
 * names of its fixture (`MESHWORK_BENCH_EVENTS_*`); starts and stops its loop when told.
 */
import { openDatabase } from "@meshwork/db";
import { connectNats, createOutboxRelay } from "@meshwork/events";
import { outbox, schema } from "@meshwork/events/testing";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { jetstream } from "@nats-io/jetstream";
import {
  createChildProfiler,
  isProfileCommand,
  type ProfileAnswer,
  type ProfileCommand,
  required,
} from "./events-child.js";

/** What the parent tells the relay: start or stop its loop (answered `started`, `stopped`), or profile. */
export type RelayCommand = { kind: "start" } | { kind: "stop" } | ProfileCommand;

/** What the relay tells its parent. */
export type RelayReport = { kind: "ready" } | { kind: "started" } | { kind: "stopped" } | ProfileAnswer;

const send = (report: RelayReport) => process.send?.(report);

const retentionMs = Number(required("MESHWORK_BENCH_OUTBOX_RETENTION_MS"));
const database = await openDatabase(
  {
    url: required("MESHWORK_BENCH_EVENTS_DB"),
    dataDir: "",
    // The services' default pool. With 2 (tried so the shared server's connection slots would
    // last on a busy machine) four quiet runs gave 6.4-7.9k events/s at 212-258 µs of CPU per
    // event, Postgres's share 44-70 µs; with 10, three of four runs of the same build 10.8-12.3k
    // at 148-168 µs (Postgres 22-26) and one 8.1k at 226 (Postgres 58).
    pool: { max: 10, idleTimeoutS: 60, maxLifetimeS: 600, connectTimeoutS: 5 },
  },
  schema,
);
const nc = await connectNats(required("MESHWORK_BENCH_EVENTS_NATS"), "bench-events-relay");
const telemetry = createTelemetry({ serviceName: "bench-events-relay" });
const relay = createOutboxRelay({
  database,
  table: outbox,
  js: jetstream(nc),
  logger: createLogger({ service: "bench-events-relay", level: "warn" }),
  tracer: telemetry.tracer,
  meter: telemetry.meter,
  batchSize: 256,
  pollMs: 1_000,
  retentionMs,
});

let stopping = false;
async function exit(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await relay.stop();
  await nc.close();
  await database.close();
  await telemetry.shutdown();
  process.exit(0);
}
process.on("SIGTERM", () => void exit());
process.on("disconnect", () => void exit());

const profile = createChildProfiler(send);
process.on("message", (command: RelayCommand) => {
  if (isProfileCommand(command)) profile(command);
  else if (command.kind === "start") void relay.start().then(() => send({ kind: "started" }));
  else void relay.stop().then(() => send({ kind: "stopped" }));
});
send({ kind: "ready" });
