import type { DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Meter, Tracer } from "@opentelemetry/api";
import type { EventsConfig } from "./config.js";
import { connectNats } from "./nats.js";
import { createOutboxRelay, type OutboxRelay, type OutboxTable } from "./outbox.js";
import { provision, type StreamSpec } from "./topology.js";

/** A producing service's side of the event backbone, started. */
export interface OutboxPublisher {
  readonly nc: NatsConnection;
  readonly relay: OutboxRelay;
  /** Stops the relay after its batch in progress, then drains the connection. */
  stop(): Promise<void>;
}

/**
 * What every producing service does at start-up: connects to NATS (as `service`), provisions
 * the stream its events go to, and starts the relay that publishes its outbox there. NATS is
 * needed then, not afterwards: while it is away, events wait in the outbox.
 */
export async function startOutboxPublisher(options: {
  service: string;
  config: EventsConfig;
  stream: StreamSpec;
  /** Other streams the service owns and publishes this outbox's rows to (legacy's LEGACY_USERS). */
  alsoStreams?: readonly StreamSpec[];
  // biome-ignore lint/suspicious/noExplicitAny: any service's schema
  database: DatabaseHandle<any>;
  table: OutboxTable;
  logger: Logger;
  tracer: Tracer;
  meter: Meter;
}): Promise<OutboxPublisher> {
  const nc = await connectNats(options.config.natsUrl, options.service, options.config.natsCredentials);
  try {
    await provision(await jetstreamManager(nc), {
      streams: [options.stream, ...(options.alsoStreams ?? [])],
    });
    const relay = createOutboxRelay({
      database: options.database,
      table: options.table,
      js: jetstream(nc),
      logger: options.logger,
      tracer: options.tracer,
      meter: options.meter,
      ...options.config.outbox,
    });
    await relay.start();
    return {
      nc,
      relay,
      async stop() {
        await relay.stop();
        await nc.drain();
      },
    };
  } catch (err) {
    await nc.close();
    throw err;
  }
}
