import { fileURLToPath } from "node:url";
import { create, createRegistry } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  file_meshwork_users_v1_events,
  UserRegisteredSchema,
} from "@meshwork/contracts/meshwork/users/v1/events";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createLogger, createTelemetry, type Logger, type Telemetry } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase, uniqueName } from "@meshwork/testing";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { createEnvelope, type EventEnvelope } from "../envelope.js";
import { connectNats } from "../nats.js";
import { provision } from "../topology.js";
import { schema } from "./schema.js";

/** Migrations of the fixture schema (kept beside the package, not compiled). */
export const migrations = fileURLToPath(new URL("../../test/fixtures/drizzle", import.meta.url));
export const registry = createRegistry(file_meshwork_users_v1_events);
export const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

/** Everything one events test needs, all uniquely named, removed by `close()`. */
export interface EventsFixture {
  namespace: string;
  stream: string;
  dlqStream: string;
  dlqSubject: string;
  testDb: TestDatabase;
  database: DatabaseHandle<typeof schema>;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  logger: Logger;
  telemetry: Telemetry;
  /** A UserRegistered event in this fixture's namespace. */
  event(n?: number): EventEnvelope;
  close(): Promise<void>;
}

/**
 * Creates a throw-away events set-up on the real servers: a unique namespace, its stream and
 * dead-letter stream (plus any durable consumers asked for), a fresh Postgres database with an
 * outbox, an inbox and an `effects` table. For tests and benchmarks. The consumers' ack wait is
 * `ackWaitMs` (default 5 s). `streams: false` declares neither stream (nor consumers): for a test
 * that declares the mesh's own streams in the namespace, whose subjects would overlap them.
 */
export async function createEventsFixture(
  options: { natsUrl?: string; durables?: string[]; ackWaitMs?: number; streams?: boolean } = {},
): Promise<EventsFixture> {
  const id = uniqueName("t");
  const namespace = `${id}.`;
  const stream = `${id.toUpperCase()}_EVENTS`;
  const dlqStream = `${id.toUpperCase()}_DLQ`;
  const testDb = await createTestDatabase("mw_events");
  const database = await openDatabase(
    { url: testDb.url, dataDir: "", pool: { max: 5, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 } },
    schema,
  );
  await database.migrate(migrations);
  const nc = await connectNats(options.natsUrl ?? natsUrl, `test-${id}`);
  const jsm = await jetstreamManager(nc);
  if (options.streams !== false) await provisionStreams(jsm, namespace, stream, dlqStream, options);
  const logger = createLogger({ service: "events-test", level: process.env.TEST_LOG_LEVEL ?? "silent" });
  const telemetry = createTelemetry({ serviceName: "events-test" });
  return {
    namespace,
    stream,
    dlqStream,
    dlqSubject: `${namespace}dlq.test`,
    testDb,
    database,
    nc,
    js: jetstream(nc),
    jsm,
    logger,
    telemetry,
    event: (n = 0) =>
      createEnvelope(
        UserRegisteredSchema,
        create(UserRegisteredSchema, {
          userId: `00000000-0000-7000-8000-${String(n).padStart(12, "0")}`,
          email: `u${n}@example.com`,
          displayName: `U${n}`,
          registerTime: timestampNow(),
        }),
        { source: "/meshwork/test", namespace },
      ),
    async close() {
      await jsm.streams.delete(stream).catch(() => {});
      await jsm.streams.delete(dlqStream).catch(() => {});
      await nc.close();
      await database.close();
      await testDb.drop();
      await telemetry.shutdown();
    },
  };
}

/** The fixture's own stream and dead-letter stream, with the durables asked for. */
async function provisionStreams(
  jsm: JetStreamManager,
  namespace: string,
  stream: string,
  dlqStream: string,
  options: { durables?: string[]; ackWaitMs?: number },
): Promise<void> {
  await provision(jsm, {
    streams: [
      { name: stream, subjects: [`${namespace}meshwork.>`] },
      { name: dlqStream, subjects: [`${namespace}dlq.>`] },
    ],
    consumers: (options.durables ?? []).map((durable) => ({
      stream,
      durable,
      filterSubject: `${namespace}meshwork.>`,
      ackWaitMs: options.ackWaitMs ?? 5_000,
    })),
  });
}
